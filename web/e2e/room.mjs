// Two browsers in one studio through the edge, without the web app's UI: a
// host and a guest invited by link. The host admits the guest, both publish
// their cameras and watch each other's, the host puts both on stage and
// goes live; later the guest reloads the tab and comes back.
//
//   node e2e/room.mjs <api_base> <host_access_token> <studio_id> <rtmp_url> <seconds>
//
// Prints one JSON line per step to stdout; exits non-zero on failure.
import { readFileSync } from "node:fs";
import { launch, openPage } from "./browser.mjs";

const [api, hostToken, studio, rtmpUrl, secondsArg] = process.argv.slice(2);
if (!api || !hostToken || !studio || !rtmpUrl) {
  console.error("usage: room.mjs <api_base> <host_access_token> <studio_id> <rtmp_url> [seconds]");
  process.exit(2);
}
const seconds = Number(secondsArg || 10);
const helpers = readFileSync(new URL("./rtc-page.js", import.meta.url), "utf8");
const PAGE = `<!doctype html><meta charset="utf-8"><title>room</title>
<video id="remote" autoplay muted playsinline></video><script>${helpers}</script>`;
const say = (step, fields) => console.log(JSON.stringify({ step, ...fields }));

async function call(page, method, path, token, body) {
  return page.evaluate(async ([api, method, path, token, body]) => {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    const r = await fetch(api + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    let json = null;
    try { json = JSON.parse(text); } catch (_) { /* empty body */ }
    if (!r.ok) throw new Error(method + " " + path + " answered " + r.status + ": " + text);
    return json;
  }, [api, method, path, token, body]);
}

async function waitFor(what, check, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function publishCamera(page, edge, mediaToken, source, flipping) {
  return page.evaluate(async ([edge, studio, source, token, flipping]) => {
    const stream = flipping ? await flippingCamera()
      : await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
    window.published = await publishStream(`${edge}/rtc/${studio}/publish/${source}`, token, stream);
    return window.published.location;
  }, [edge, studio, source, mediaToken, flipping]);
}

async function play(page, edge, mediaToken, source) {
  return page.evaluate(async ([edge, studio, source, token]) => {
    const video = document.getElementById("remote");
    window.playing = await playInto(`${edge}/rtc/${studio}/play/${source}`, token, video);
    window.frameTimes = [];
    const onFrame = () => { window.frameTimes.push(Date.now()); video.requestVideoFrameCallback(onFrame); };
    video.requestVideoFrameCallback(onFrame);
    return window.playing.first_frame_ms;
  }, [edge, studio, source, mediaToken]);
}

const browser = await launch();
let exitCode = 0;
try {
  const origin = new URL(api).origin;
  const host = await openPage(browser, origin, PAGE);
  const hostJoin = await call(host, "POST", `/api/v1/studios/${studio}/room/join`, hostToken, { name: "Host" });
  const edge = hostJoin.edge_url;
  const hostCamera = hostJoin.room.you.camera_source;
  await publishCamera(host, edge, hostJoin.media_token, hostCamera, true);
  const invite = await call(host, "POST", `/api/v1/studios/${studio}/invites`, hostToken, { hours: 1 });
  say("invited", { invite_path: invite.invite_path.replace(/invite=.*/, "invite=…") });

  const guest = await openPage(browser, origin, PAGE);
  const pass = await call(guest, "POST", `/api/v1/studios/${studio}/room/guests`, null,
    { invite: invite.invite_token, name: "Guest" });
  const guestJoin = await call(guest, "POST", `/api/v1/studios/${studio}/room/join`, pass.guest_token);
  const guestCamera = guestJoin.room.you.camera_source;
  say("guest waiting", { state: guestJoin.room.you.state });

  // The host sees the guest waiting and admits them.
  const waiting = await waitFor("the guest in the host's room", async () => {
    const room = await call(host, "GET", `/api/v1/studios/${studio}/room`, hostToken);
    return room.participants.find((p) => p.state === "waiting");
  });
  await call(host, "POST", `/api/v1/studios/${studio}/room/participants/${waiting.id}/admit`, hostToken);
  await waitFor("admission", async () =>
    (await call(guest, "GET", `/api/v1/studios/${studio}/room`, pass.guest_token)).you.state === "backstage");
  const admittedAt = Date.now();

  await publishCamera(guest, edge, pass.guest_token, guestCamera, false);
  const guestFirst = await play(guest, edge, pass.guest_token, hostCamera);
  const hostFirst = await play(host, edge, hostJoin.media_token, guestCamera);
  say("connected", { guest_sees_host_ms: guestFirst, host_sees_guest_ms: hostFirst,
    admitted_to_first_remote_frame_ms: Date.now() - admittedAt });

  // Participant to participant: the host's flips as the guest sees them.
  const delays = await guest.evaluate(() => measureFlips(document.getElementById("remote"), 12));
  const sorted = [...delays].sort((a, b) => a - b);
  say("delay", { samples: delays.length, median_ms: sorted[Math.floor(sorted.length / 2)],
    max_ms: sorted[sorted.length - 1], min_ms: sorted[0] });

  // On stage in split with a banner, out to the destination.
  await call(host, "PUT", `/api/v1/studios/${studio}/scene`, hostToken, {
    layout: "split", on_stage: [hostCamera, guestCamera],
    banner: { text: "Live from the browser studio", visible: true }, brand_color: "#c00060" });
  await call(host, "POST", `/api/v1/studios/${studio}/destinations`, hostToken,
    { platform: "custom", name: "local nginx", url: rtmpUrl, stream_key: "room" });
  await call(host, "POST", `/api/v1/studios/${studio}/broadcast`, hostToken);
  say("live", {});
  await new Promise((r) => setTimeout(r, seconds * 1000));
  say("sending", {
    host: await host.evaluate(() => outboundVideo(window.published.pc)),
    guest: await guest.evaluate(() => outboundVideo(window.published.pc)),
    guest_receiving: await guest.evaluate(() => inboundVideo(window.playing.pc)),
  });

  // The guest reloads mid-show and comes back with the same token.
  const reloadedAt = Date.now();
  await guest.reload();
  const back = await call(guest, "POST", `/api/v1/studios/${studio}/room/join`, pass.guest_token);
  await publishCamera(guest, edge, pass.guest_token, guestCamera, false);
  const republishedAt = Date.now();
  const resumedAt = await waitFor("the guest's picture at the host again", () =>
    host.evaluate((since) => window.frameTimes.find((t) => t >= since), republishedAt), 40000);
  say("reloaded", { state: back.room.you.state, same_camera: back.room.you.camera_source === guestCamera,
    back_after_ms: resumedAt - reloadedAt });
  await new Promise((r) => setTimeout(r, 10000));

  // The host removes the guest: their token stops working, and the edge
  // ends the media they were sending.
  const removedAt = Date.now();
  await call(host, "DELETE", `/api/v1/studios/${studio}/room/participants/${back.room.you.id}`, hostToken);
  const refused = await guest.evaluate(async ([api, studio, token]) =>
    (await fetch(`${api}/api/v1/studios/${studio}/room`, { headers: { Authorization: "Bearer " + token } })).status,
    [api, studio, pass.guest_token]);
  await waitFor("the edge to end the removed guest's media", () =>
    guest.evaluate(() => ["disconnected", "failed", "closed"].includes(window.published.pc.iceConnectionState)), 30000);
  say("removed", { room_status: refused, media_ended_after_ms: Date.now() - removedAt });
  say("done", {});
} catch (err) {
  console.error(`room: ${err.message}`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
