// Load harness: what forwarding costs the edge. One browser publishes a
// 1280x720 30 fps picture that changes everywhere (so the encoder works at
// full rate) as the host's camera; receivers in the same browser play it
// back through the edge, first one, then `max` of them. The edge's CPU time
// (from /proc of its process) over each window gives the cost per
// forwarded stream.
//
//   node loadtest/edge_forwarding.mjs <api_base> <host_access_token> <studio_id> <edge_pid> [max=4] [window_s=20]
//
// Prints one JSON line per measurement.
import { readFileSync } from "node:fs";
import { launch, openPage } from "../web/e2e/browser.mjs";

const [api, token, studio, edgePid, maxArg, windowArg] = process.argv.slice(2);
if (!api || !token || !studio || !edgePid) {
  console.error("usage: edge_forwarding.mjs <api_base> <host_access_token> <studio_id> <edge_pid> [max] [window_s]");
  process.exit(2);
}
const max = Number(maxArg || 4);
const windowS = Number(windowArg || 20);
const helpers = readFileSync(new URL("../web/e2e/rtc-page.js", import.meta.url), "utf8");

function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

const PAGE = `<!doctype html><meta charset="utf-8"><script>${helpers}
function busyCamera() {
  const canvas = document.createElement("canvas");
  canvas.width = 1280; canvas.height = 720;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(1280, 720);
  let frame = 0;
  setInterval(() => {
    frame++;
    for (let i = 0; i < image.data.length; i += 4) {
      const v = (i * 7 + frame * 13) & 255;
      image.data[i] = v; image.data[i + 1] = (v * 3) & 255; image.data[i + 2] = (v * 5) & 255; image.data[i + 3] = 255;
    }
    ctx.putImageData(image, 0, 0);
    ctx.fillStyle = "white"; ctx.font = "120px sans-serif"; ctx.fillText(String(frame), 100 + (frame * 9) % 900, 400);
  }, 33);
  return canvas.captureStream(30);
}
window.players = [];
async function start(api, studio, token) {
  const r = await fetch(api + "/api/v1/studios/" + studio + "/room/join", { method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + token }, body: JSON.stringify({ name: "Load" }) });
  const joined = await r.json();
  window.joined = joined;
  const stream = busyCamera();
  window.published = await publishStream(joined.edge_url + "/rtc/" + studio + "/publish/" + joined.room.you.camera_source, joined.media_token, stream);
}
async function addPlayer(studio) {
  const video = document.createElement("video");
  video.muted = true; video.autoplay = true; document.body.appendChild(video);
  const j = window.joined;
  window.players.push(await playInto(j.edge_url + "/rtc/" + studio + "/play/" + j.room.you.camera_source, j.media_token, video));
}
async function sending() {
  const out = await outboundVideo(window.published.pc);
  const stats = [...(await window.published.pc.getStats()).values()];
  const o = stats.find((s) => s.type === "outbound-rtp" && s.kind === "video");
  return { ...out, bytes: o ? o.bytesSent : 0 };
}
</script>`;

const browser = await launch();
try {
  const page = await openPage(browser, new URL(api).origin, PAGE);
  await page.evaluate(([a, s, t]) => start(a, s, t), [api, studio, token]);
  await page.evaluate((s) => addPlayer(s), studio);
  // Let the sender's bandwidth estimate ramp up.
  await page.waitForTimeout(15000);
  for (const receivers of [1, max]) {
    while ((await page.evaluate(() => window.players.length)) < receivers) {
      await page.evaluate((s) => addPlayer(s), studio);
    }
    await page.waitForTimeout(3000);
    const before = { cpu: cpuSeconds(edgePid), at: Date.now(), sent: await page.evaluate(() => sending()) };
    await page.waitForTimeout(windowS * 1000);
    const after = { cpu: cpuSeconds(edgePid), at: Date.now(), sent: await page.evaluate(() => sending()) };
    const seconds = (after.at - before.at) / 1000;
    const cores = (after.cpu - before.cpu) / seconds;
    console.log(JSON.stringify({
      receivers,
      edge_cpu_percent_of_a_core: Math.round(cores * 1000) / 10,
      publish: { width: after.sent.width, height: after.sent.height, fps: after.sent.fps,
                 kbps: Math.round(((after.sent.bytes - before.sent.bytes) * 8) / seconds / 1000) },
    }));
  }
} finally {
  await browser.close();
}
