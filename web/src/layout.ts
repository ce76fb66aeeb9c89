// Where each on-stage source goes, the same geometry the origin composes
// with (origin/src/layout.rs), so the stage preview shows what goes out.

import type { Layout } from "./api";

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

const even = (v: number) => v - (((v % 2) + 2) % 2);
const div = (a: number, b: number) => Math.trunc(a / b);

/// The largest 16:9 tile in even pixels that fits.
function fit(width: number, height: number): [number, number] {
  if (width * 9 <= height * 16) return [even(width), even(div(width * 9, 16))];
  return [even(div(height * 16, 9)), even(height)];
}

function grid(tiles: (Rect | null)[], columns: number, rows: number, w: number, h: number): void {
  const count = tiles.length;
  if (count === 1) {
    tiles[0] = { x: 0, y: 0, width: w, height: h };
    return;
  }
  const cols = Math.min(columns, count);
  const gap = even(div(w, 80));
  const cellW = div(w - gap * (cols + 1), cols);
  const cellH = div(h - gap * (rows + 1), rows);
  const [tileW, tileH] = fit(cellW, cellH);
  const blockH = rows * tileH + (rows - 1) * gap;
  const top = div(h - blockH, 2);
  for (let index = 0; index < count; index++) {
    const row = div(index, columns);
    const inRow = Math.min(count - row * columns, columns);
    const column = index % columns;
    const rowW = inRow * tileW + (inRow - 1) * gap;
    const left = div(w - rowW, 2);
    tiles[index] = { x: even(left + column * (tileW + gap)), y: even(top + row * (tileH + gap)), width: tileW, height: tileH };
  }
}

/// Tile `i` of the `i`-th on-stage source, `null` when the layout hides it.
export function arrange(layout: Layout, count: number, w = 1280, h = 720): (Rect | null)[] {
  const tiles: (Rect | null)[] = new Array<Rect | null>(count).fill(null);
  if (count === 0) return tiles;
  const full = { x: 0, y: 0, width: w, height: h };
  switch (layout) {
    case "solo":
      tiles[0] = full;
      break;
    case "pip": {
      tiles[0] = full;
      if (count > 1) {
        const margin = even(div(h, 24));
        const [pw, ph] = [even(div(w, 4)), even(div(h, 4))];
        tiles[1] = { x: w - pw - margin, y: h - ph - margin, width: pw, height: ph };
      }
      break;
    }
    case "split":
      grid(tiles, count, 1, w, h);
      break;
    case "grid": {
      let columns = 1;
      while (columns * columns < count) columns++;
      grid(tiles, columns, Math.ceil(count / columns), w, h);
      break;
    }
    case "screen": {
      if (count === 1) {
        tiles[0] = full;
        break;
      }
      const gap = even(div(w, 80));
      const sideW = even(div(w, 4));
      const [mainW, mainH] = fit(w - sideW - 3 * gap, h - 2 * gap);
      tiles[0] = { x: gap, y: even(div(h - mainH, 2)), width: mainW, height: mainH };
      const speakers = count - 1;
      const [tileW, tileH] = fit(sideW, div(h - gap * (speakers + 1), speakers));
      const blockH = speakers * tileH + (speakers - 1) * gap;
      const top = div(h - blockH, 2);
      for (let i = 1; i < count; i++) {
        tiles[i] = { x: even(w - gap - sideW + div(sideW - tileW, 2)), y: even(top + (i - 1) * (tileH + gap)), width: tileW, height: tileH };
      }
      break;
    }
  }
  return tiles;
}
