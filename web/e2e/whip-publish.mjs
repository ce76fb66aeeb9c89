// A browser as a WHIP encoder: publishes its fake camera and microphone to a
// WHIP endpoint for a while, then ends the session with DELETE.
//
//   node e2e/whip-publish.mjs <whip_url> <bearer_token> <seconds>
//
// Prints one JSON line per step to stdout; exits non-zero on failure.
import { launch, openPage } from "./browser.mjs";

const [whipUrl, token, secondsArg] = process.argv.slice(2);
if (!whipUrl || !token) {
  console.error("usage: whip-publish.mjs <whip_url> <bearer_token> [seconds]");
  process.exit(2);
}
const seconds = Number(secondsArg || 10);

const PAGE = `<!doctype html><meta charset="utf-8"><title>WHIP publisher</title>
<script>
async function publish(whipUrl, token) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 1280, height: 720, frameRate: 30 }, audio: true });
  const pc = new RTCPeerConnection();
  window.pc = pc;
  for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: "sendonly" });
  await pc.setLocalDescription(await pc.createOffer());
  // Wait for all candidates: one round trip, no trickle needed.
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 3000);
  });
  const response = await fetch(whipUrl, { method: "POST",
    headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + token },
    body: pc.localDescription.sdp });
  const body = await response.text();
  if (response.status !== 201) throw new Error("WHIP POST answered " + response.status + ": " + body);
  const location = new URL(response.headers.get("Location"), whipUrl).toString();
  await pc.setRemoteDescription({ type: "answer", sdp: body });
  await new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === "connected") resolve();
      if (pc.connectionState === "failed") reject(new Error("peer connection failed"));
    };
    pc.addEventListener("connectionstatechange", check);
    check();
    setTimeout(() => reject(new Error("not connected after 15 s: " + pc.connectionState)), 15000);
  });
  const pair = [...(await pc.getStats()).values()].find((s) => s.type === "candidate-pair" && s.nominated);
  return { location, pair: pair ? pair.localCandidateId + " -> " + pair.remoteCandidateId : null };
}
async function sentFrames() {
  const stats = [...(await window.pc.getStats()).values()];
  const video = stats.find((s) => s.type === "outbound-rtp" && s.kind === "video");
  const audio = stats.find((s) => s.type === "outbound-rtp" && s.kind === "audio");
  return { video_frames: video ? video.framesEncoded : 0, audio_packets: audio ? audio.packetsSent : 0,
           codec: video && stats.find((s) => s.id === video.codecId)?.mimeType };
}
async function candidates() {
  const stats = [...(await window.pc.getStats()).values()];
  const pair = stats.find((s) => s.type === "candidate-pair" && s.state === "succeeded");
  if (!pair) return null;
  const local = stats.find((s) => s.id === pair.localCandidateId);
  const remote = stats.find((s) => s.id === pair.remoteCandidateId);
  return { local: local.address + ":" + local.port, remote: remote.address + ":" + remote.port };
}
</script>`;

const browser = await launch();
let exitCode = 0;
try {
  const page = await openPage(browser, new URL(whipUrl).origin, PAGE);
  const session = await page.evaluate(([u, t]) => publish(u, t), [whipUrl, token]);
  console.log(JSON.stringify({ step: "connected", location: session.location,
    pair: await page.evaluate(() => candidates()) }));
  await page.waitForTimeout(seconds * 1000);
  console.log(JSON.stringify({ step: "sent", ...(await page.evaluate(() => sentFrames())) }));
  const status = await page.evaluate(async ([loc, t]) => {
    const r = await fetch(loc, { method: "DELETE", headers: { Authorization: "Bearer " + t } });
    return r.status;
  }, [session.location, token]);
  console.log(JSON.stringify({ step: "deleted", status }));
} catch (err) {
  console.error(`whip-publish: ${err.message}`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
