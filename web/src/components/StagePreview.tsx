import { useEffect, useRef } from "react";

import type { Scene } from "../api";
import { arrange } from "../layout";

const W = 1280;
const H = 720;

function Tile({ stream, name }: { stream: MediaStream | null; name: string }) {
  const video = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    if (video.current && video.current.srcObject !== stream) video.current.srcObject = stream;
  }, [stream]);
  return (
    <>
      {stream ? (
        <video ref={video} autoPlay muted playsInline />
      ) : (
        <div className="placeholder">{name}</div>
      )}
      <span className="tile-name">{name}</span>
    </>
  );
}

/// The program as the origin composes it, from the same scene document:
/// the same tile geometry, background, banner and logo, with each source's
/// live picture (one's own camera from the device, the others from the
/// edge), unmirrored as it goes out.
export function StagePreview({
  scene,
  streams,
  names,
}: {
  scene: Scene;
  streams: Map<string, MediaStream | null>;
  names: Map<string, string>;
}) {
  const tiles = arrange(scene.layout, scene.on_stage.length, W, H);
  const pct = (v: number, of: number) => `${(100 * v) / of}%`;
  return (
    <div
      className="stage"
      data-testid="stage"
      data-layout={scene.layout}
      style={{
        backgroundColor: scene.background.color ?? "#101820",
        backgroundImage: scene.background.image ? `url(${scene.background.image})` : undefined,
      }}
    >
      {scene.on_stage.map((source, index) => {
        const tile = tiles[index];
        if (!tile) return null;
        return (
          <div
            key={source}
            className="tile"
            data-source={source}
            style={{ left: pct(tile.x, W), top: pct(tile.y, H), width: pct(tile.width, W), height: pct(tile.height, H) }}
          >
            <Tile stream={streams.get(source) ?? null} name={names.get(source) ?? "Source"} />
          </div>
        );
      })}
      {scene.banner.visible && scene.banner.text && (
        <div className="banner" data-testid="banner" style={{ backgroundColor: scene.brand_color }}>
          {scene.banner.text}
        </div>
      )}
      {scene.ticker?.visible && scene.ticker.text && (
        <div className="ticker" data-testid="ticker">
          <span>{scene.ticker.text}</span>
        </div>
      )}
      {scene.logo && <img className="logo" src={scene.logo} alt="logo" />}
    </div>
  );
}
