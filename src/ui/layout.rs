//! Where each panel goes, from the terminal size alone, so the views and the mouse handling in
//! `update` agree without the view writing anything back.

use ratatui::layout::Rect;

/// Below this the dashboard says the terminal is too small.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// What the list panel shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewMode {
    /// Grid and detail pane.
    Grid,
    /// Gantt chart of phases per VM over wall time.
    Timeline,
}

const HEADER_HEIGHT: u16 = 3;
const FOOTER_HEIGHT: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub view: ViewMode,
    pub header: Rect,
    /// The grid, or the timeline (each with its border).
    pub list: Rect,
    /// Detail of the selected VM; empty in the timeline view.
    pub detail: Rect,
    pub logs_all: Rect,
    pub logs_vm: Rect,
    /// Between the header and the footer: the diagnostics pane covers the panels there.
    pub body: Rect,
    pub footer: Rect,
}

/// `None` when the terminal is too small.
pub fn compute(width: u16, height: u16, view: ViewMode) -> Option<Areas> {
    if width < MIN_WIDTH || height < MIN_HEIGHT {
        return None;
    }
    let rest = height - HEADER_HEIGHT - FOOTER_HEIGHT;
    let body_h = rest * 3 / 5;
    let logs_h = rest - body_h;
    let left_w = width * 3 / 5;
    let header = Rect::new(0, 0, width, HEADER_HEIGHT);
    let body_y = HEADER_HEIGHT;
    let logs_y = body_y + body_h;
    let (list, detail) = match view {
        ViewMode::Grid => (
            Rect::new(0, body_y, left_w, body_h),
            Rect::new(left_w, body_y, width - left_w, body_h),
        ),
        ViewMode::Timeline => (Rect::new(0, body_y, width, body_h), Rect::default()),
    };
    Some(Areas {
        view,
        header,
        list,
        detail,
        logs_all: Rect::new(0, logs_y, left_w, logs_h),
        logs_vm: Rect::new(left_w, logs_y, width - left_w, logs_h),
        body: Rect::new(0, body_y, width, rest),
        footer: Rect::new(0, height - FOOTER_HEIGHT, width, FOOTER_HEIGHT),
    })
}

/// The rows that hold one VM each: inside the border, below the column header (grid) or the
/// time axis (timeline), above the legend (timeline).
pub fn list_rows(areas: &Areas) -> Rect {
    list_rows_in(areas.list, areas.view)
}

/// [`list_rows`] for a list panel at `list` in `view`.
pub fn list_rows_in(list: Rect, view: ViewMode) -> Rect {
    let inner = inner(list);
    let (top, bottom) = match view {
        ViewMode::Grid => (1, 0),
        ViewMode::Timeline => (1, 1),
    };
    Rect::new(
        inner.x,
        inner.y + top,
        inner.width,
        inner.height.saturating_sub(top + bottom),
    )
}

/// Inside a one-cell border.
pub fn inner(area: Rect) -> Rect {
    Rect::new(
        area.x.saturating_add(1),
        area.y.saturating_add(1),
        area.width.saturating_sub(2),
        area.height.saturating_sub(2),
    )
}

/// A `width` x `height` box centred in `area` (shrunk to fit).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let (w, h) = (width.min(area.width), height.min(area.height));
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_tile_the_screen_without_overlap() {
        for (w, h) in [(60, 16), (80, 24), (120, 40), (140, 45), (300, 90)] {
            let a = compute(w, h, ViewMode::Grid).unwrap();
            let cells: u32 = [a.header, a.list, a.detail, a.logs_all, a.logs_vm, a.footer]
                .iter()
                .map(|r| u32::from(r.width) * u32::from(r.height))
                .sum();
            assert_eq!(cells, u32::from(w) * u32::from(h), "{w}x{h}");
            assert!(!a.list.intersects(a.detail) && !a.list.intersects(a.logs_all));
            assert!(list_rows(&a).height >= 2, "{w}x{h}");
        }
    }

    #[test]
    fn too_small_is_none() {
        assert!(compute(59, 24, ViewMode::Grid).is_none());
        assert!(compute(80, 15, ViewMode::Grid).is_none());
        assert!(compute(60, 16, ViewMode::Timeline).is_some());
    }

    #[test]
    fn the_timeline_takes_the_full_width() {
        let a = compute(140, 45, ViewMode::Timeline).unwrap();
        assert_eq!(a.list.width, 140);
        assert!(a.detail.is_empty());
        assert_eq!(list_rows(&a).height, a.list.height - 4);
    }
}
