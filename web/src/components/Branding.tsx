import { useState } from "react";

import type { Scene } from "../api";

function readAsDataUrl(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(new Error("could not read the file"));
    reader.readAsDataURL(file);
  });
}

/// Banners (a list kept with the studio, one shown at a time), the ticker,
/// logo, background and brand colour. Every change goes out live through
/// `update`.
export function Branding({ scene, update }: { scene: Scene; update: (scene: Scene) => void }) {
  const banners = scene.banners ?? [];
  const setBanners = (next: string[]) => update({ ...scene, banners: next });
  const [text, setText] = useState("");
  const [tickerText, setTickerText] = useState(scene.ticker?.text ?? "");
  const shown = scene.banner.visible ? scene.banner.text : null;
  const show = (banner: string) => update({ ...scene, banner: { text: banner, visible: true } });

  async function upload(file: File | undefined, apply: (url: string) => Scene) {
    if (!file) return;
    update(apply(await readAsDataUrl(file)));
  }

  return (
    <section className="panel" aria-label="Branding">
      <h3>Banners</h3>
      <ul className="banners">
        {banners.map((banner, index) => (
          <li key={index} className={banner === shown ? "shown" : undefined}>
            <span>{banner}</span>
            {banner === shown ? (
              <button className="secondary" onClick={() => update({ ...scene, banner: { text: banner, visible: false } })}>Hide</button>
            ) : (
              <button onClick={() => show(banner)}>Show</button>
            )}
            <button className="danger" aria-label="Delete banner" onClick={() => setBanners(banners.filter((_, i) => i !== index))}>×</button>
          </li>
        ))}
      </ul>
      <form
        className="row"
        aria-label="New banner"
        onSubmit={(e) => {
          e.preventDefault();
          if (!text.trim()) return;
          setBanners([...banners, text.trim()]);
          setText("");
        }}
      >
        <input placeholder="Banner text" maxLength={200} value={text} onChange={(e) => setText(e.target.value)} />
        <button type="submit">Add banner</button>
      </form>

      <h3>Ticker</h3>
      <form
        className="row"
        aria-label="Ticker"
        onSubmit={(e) => {
          e.preventDefault();
          update({ ...scene, ticker: { text: tickerText.trim(), visible: true } });
        }}
      >
        <input placeholder="Scrolling text" maxLength={500} value={tickerText} onChange={(e) => setTickerText(e.target.value)} />
        <button type="submit">Show ticker</button>
      </form>
      {scene.ticker?.visible && (
        <button className="secondary" onClick={() => update({ ...scene, ticker: { text: scene.ticker?.text ?? "", visible: false } })}>Hide ticker</button>
      )}

      <h3>Brand</h3>
      <label className="inline">
        Brand colour
        <input type="color" aria-label="Brand colour" value={scene.brand_color} onChange={(e) => update({ ...scene, brand_color: e.target.value })} />
      </label>
      <label className="inline">
        Background colour
        <input
          type="color"
          aria-label="Background colour"
          value={scene.background.color ?? "#101820"}
          onChange={(e) => update({ ...scene, background: { ...scene.background, color: e.target.value } })}
        />
      </label>
      <label>
        Background image
        <input type="file" accept="image/png,image/jpeg" onChange={(e) => void upload(e.target.files?.[0], (url) => ({ ...scene, background: { ...scene.background, image: url } }))} />
      </label>
      {scene.background.image && (
        <button className="secondary" onClick={() => update({ ...scene, background: { color: scene.background.color ?? "#101820", image: null } })}>Remove background image</button>
      )}
      <label>
        Logo (PNG)
        <input type="file" accept="image/png" onChange={(e) => void upload(e.target.files?.[0], (url) => ({ ...scene, logo: url }))} />
      </label>
      {scene.logo && (
        <button className="secondary" onClick={() => update({ ...scene, logo: null })}>Remove logo</button>
      )}
    </section>
  );
}
