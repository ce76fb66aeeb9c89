//! Where each on-stage source goes on the output frame, per layout.
//!
//! Pure geometry: the compositor turns these rectangles into pad
//! properties, and scales every source into its tile keeping its aspect.

use serde::{Deserialize, Serialize};

/// How the on-stage sources are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// The first source fills the frame; the others are hidden (but heard).
    #[default]
    Solo,
    /// All sources side by side in one row.
    Split,
    /// Sources in a grid, as square as possible (2x1, 2x2, 3x3, ...).
    Grid,
    /// The first source fills the frame, the second sits small in the
    /// bottom-right corner; the others are hidden.
    Pip,
    /// The first source (a shared screen) large on the left, the others
    /// (the speakers) in a column beside it.
    Screen,
}

/// A rectangle on the output frame, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub width: i32,
    /// Height.
    pub height: i32,
}

impl Rect {
    /// Whether the point lies inside.
    pub fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x && x < self.x + self.width && y >= self.y && y < self.y + self.height
    }
}

/// Tiles are 16:9, like nearly every camera and screen share.
const TILE_ASPECT: (i32, i32) = (16, 9);

/// Arranges `count` sources on a `width` x `height` frame. Entry `i` is the
/// tile of the `i`-th on-stage source, `None` when the layout hides it.
pub fn arrange(layout: Layout, count: usize, width: u32, height: u32) -> Vec<Option<Rect>> {
    let (w, h) = (width as i32, height as i32);
    let full = Rect {
        x: 0,
        y: 0,
        width: w,
        height: h,
    };
    let mut tiles = vec![None; count];
    if count == 0 {
        return tiles;
    }
    match layout {
        Layout::Solo => tiles[0] = Some(full),
        Layout::Pip => {
            tiles[0] = Some(full);
            if count > 1 {
                let margin = even(h / 24);
                let (pw, ph) = (even(w / 4), even(h / 4));
                tiles[1] = Some(Rect {
                    x: w - pw - margin,
                    y: h - ph - margin,
                    width: pw,
                    height: ph,
                });
            }
        }
        Layout::Split => grid_into(&mut tiles, count, 1, w, h),
        Layout::Screen if count == 1 => tiles[0] = Some(full),
        Layout::Screen => {
            let gap = even(w / 80);
            let side_w = even(w / 4);
            let (main_w, main_h) = fit(w - side_w - 3 * gap, h - 2 * gap);
            tiles[0] = Some(Rect {
                x: gap,
                y: even((h - main_h) / 2),
                width: main_w,
                height: main_h,
            });
            let speakers = (count - 1) as i32;
            let (tile_w, tile_h) = fit(side_w, (h - gap * (speakers + 1)) / speakers);
            let block_h = speakers * tile_h + (speakers - 1) * gap;
            let top = (h - block_h) / 2;
            for (index, tile) in tiles.iter_mut().skip(1).enumerate() {
                *tile = Some(Rect {
                    x: even(w - gap - side_w + (side_w - tile_w) / 2),
                    y: even(top + index as i32 * (tile_h + gap)),
                    width: tile_w,
                    height: tile_h,
                });
            }
        }
        Layout::Grid => {
            let columns = (1..).find(|c| c * c >= count).unwrap_or(1);
            let rows = count.div_ceil(columns);
            grid_into(&mut tiles, columns, rows, w, h);
        }
    }
    tiles
}

/// Fills `tiles` row by row, `columns` per row; a short last row is centred.
fn grid_into(tiles: &mut [Option<Rect>], columns: usize, rows: usize, w: i32, h: i32) {
    let count = tiles.len();
    if count == 1 {
        tiles[0] = Some(Rect {
            x: 0,
            y: 0,
            width: w,
            height: h,
        });
        return;
    }
    let columns_i = columns.min(count) as i32;
    let rows_i = rows as i32;
    let gap = even(w / 80);
    let cell_w = (w - gap * (columns_i + 1)) / columns_i;
    let cell_h = (h - gap * (rows_i + 1)) / rows_i;
    let (tile_w, tile_h) = fit(cell_w, cell_h);
    let block_h = rows_i * tile_h + (rows_i - 1) * gap;
    let top = (h - block_h) / 2;
    for (index, tile) in tiles.iter_mut().enumerate() {
        let row = (index / columns) as i32;
        let in_row = (count - (row as usize) * columns).min(columns) as i32;
        let column = (index % columns) as i32;
        let row_w = in_row * tile_w + (in_row - 1) * gap;
        let left = (w - row_w) / 2;
        *tile = Some(Rect {
            x: even(left + column * (tile_w + gap)),
            y: even(top + row * (tile_h + gap)),
            width: tile_w,
            height: tile_h,
        });
    }
}

/// The largest 16:9 tile, in even pixels, that fits `width` x `height`.
fn fit(width: i32, height: i32) -> (i32, i32) {
    let (aw, ah) = TILE_ASPECT;
    if width * ah <= height * aw {
        (even(width), even(width * ah / aw))
    } else {
        (even(height * aw / ah), even(height))
    }
}

/// Rounds down to an even number: 4:2:0 chroma has one sample per 2x2 pixels,
/// odd edges would smear a line of the neighbour's colour.
fn even(value: i32) -> i32 {
    value & !1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: &Rect, b: &Rect) -> bool {
        a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height
    }

    fn inside(r: &Rect, w: i32, h: i32) -> bool {
        r.x >= 0 && r.y >= 0 && r.x + r.width <= w && r.y + r.height <= h
    }

    #[test]
    fn solo_shows_only_the_first() {
        let tiles = arrange(Layout::Solo, 3, 1280, 720);
        assert_eq!(tiles[0].unwrap().width, 1280);
        assert!(tiles[1].is_none() && tiles[2].is_none());
    }

    #[test]
    fn split_puts_two_side_by_side() {
        let tiles = arrange(Layout::Split, 2, 1280, 720);
        let (left, right) = (tiles[0].unwrap(), tiles[1].unwrap());
        assert!(left.x + left.width <= 640 && right.x >= 640);
        assert_eq!(left.y, right.y);
        assert!(left.width > 600, "tiles use the width: {left:?}");
        assert!(!overlaps(&left, &right));
    }

    #[test]
    fn grid_tiles_never_overlap_and_stay_inside() {
        for count in 1..=9 {
            for (w, h) in [(1280, 720), (1920, 1080), (640, 360)] {
                let tiles: Vec<Rect> = arrange(Layout::Grid, count, w as u32, h as u32)
                    .into_iter()
                    .map(|t| t.unwrap())
                    .collect();
                for (i, a) in tiles.iter().enumerate() {
                    assert!(inside(a, w, h), "{count} at {w}x{h}: {a:?}");
                    for b in &tiles[i + 1..] {
                        assert!(!overlaps(a, b), "{count}: {a:?} {b:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn grid_of_four_is_two_by_two() {
        let tiles = arrange(Layout::Grid, 4, 1280, 720);
        let ys: Vec<i32> = tiles.iter().map(|t| t.unwrap().y).collect();
        assert_eq!(ys[0], ys[1]);
        assert_eq!(ys[2], ys[3]);
        assert!(ys[2] > ys[0]);
    }

    #[test]
    fn pip_puts_the_second_small_in_a_corner() {
        let tiles = arrange(Layout::Pip, 3, 1280, 720);
        let (main, small) = (tiles[0].unwrap(), tiles[1].unwrap());
        assert_eq!(main.width, 1280);
        assert!(small.width <= 320 && small.x > 640 && small.y > 360);
        assert!(inside(&small, 1280, 720));
        assert!(tiles[2].is_none());
    }

    #[test]
    fn screen_puts_the_screen_large_and_the_speakers_beside_it() {
        for count in 1..=5 {
            let tiles: Vec<Rect> = arrange(Layout::Screen, count, 1280, 720)
                .into_iter()
                .map(|t| t.unwrap())
                .collect();
            let screen = tiles[0];
            for (i, a) in tiles.iter().enumerate() {
                assert!(inside(a, 1280, 720), "{count}: {a:?}");
                for b in &tiles[i + 1..] {
                    assert!(!overlaps(a, b), "{count}: {a:?} {b:?}");
                }
                if i > 0 {
                    assert!(a.x > screen.x + screen.width, "beside: {a:?}");
                    assert!(a.width < screen.width / 2);
                }
            }
            if count > 1 {
                assert!(screen.width >= 900, "{screen:?}");
            }
        }
    }

    #[test]
    fn empty_stage_has_no_tiles() {
        assert!(arrange(Layout::Grid, 0, 1280, 720).is_empty());
    }
}
