// The browser studio as its users drive it, through the UI served by the
// control plane: a host signs up, creates a studio and joins; a guest opens
// the invite link in a second browser context and is admitted; the host
// puts both on stage in split, shows a banner and a ticker, adds a destination and goes
// live. A screenshot of the host's studio is kept. Then the guest reloads
// the tab and comes back on stage.
//
//   node e2e/studio-ui.mjs <app_url> <rtmp_url> <stream_key> <screenshot.png> <seconds>
//
// Prints one JSON line per step to stdout; exits non-zero on failure.
import { launch } from "./browser.mjs";

const [app, rtmpUrl, streamKey, screenshot, secondsArg] = process.argv.slice(2);
if (!app || !rtmpUrl || !streamKey || !screenshot) {
  console.error("usage: studio-ui.mjs <app_url> <rtmp_url> <stream_key> <screenshot.png> [seconds]");
  process.exit(2);
}
const seconds = Number(secondsArg || 10);
const say = (step, fields = {}) => console.log(JSON.stringify({ step, ...fields }));
const TIMEOUT = 60000;

async function context(browser, label) {
  const ctx = await browser.newContext({
    permissions: ["camera", "microphone", "clipboard-read", "clipboard-write"],
    viewport: { width: 1440, height: 1000 },
  });
  const page = await ctx.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (err) => console.error(`[${label} page error] ${err.message}`));
  page.on("console", (msg) => msg.type() === "error" && console.error(`[${label}] ${msg.text()}`));
  return page;
}

const browser = await launch();
let exitCode = 0;
const pages = {};
try {
  // The host signs up and creates a studio.
  const host = (pages.host = await context(browser, "host"));
  await host.goto(`${app}/signup`);
  await host.getByLabel("Your name").fill("Hana Host");
  await host.getByLabel("Email").fill(`host${Date.now()}@example.com`);
  await host.getByLabel("Password").fill("correct horse battery");
  await host.getByRole("button", { name: "Sign up" }).click();
  await host.getByPlaceholder("New studio name").fill("Morning show");
  await host.getByRole("button", { name: "Create studio" }).click();
  await host.waitForURL(/\/studio\//);
  const studio = host.url().split("/studio/")[1];
  say("studio", { studio });

  // Pre-join: preview, devices, level meter, name.
  await host.locator("video.preview").waitFor();
  await host.getByLabel("Display name").fill("Hana");
  await host.getByRole("button", { name: "Join studio" }).click();
  await host.locator("[data-testid=stage]").waitFor();
  say("host joined");

  // The invite link, as the host would copy it.
  await host.getByRole("button", { name: "Invite guests" }).click();
  const invite = await host.getByLabel("Invite link").inputValue();
  say("invited", { link: invite.replace(/invite=.*/, "invite=…") });

  // The guest opens it, picks a name and waits.
  const guest = (pages.guest = await context(browser, "guest"));
  await guest.goto(invite);
  await guest.getByLabel("Display name").fill("Gus Guest");
  await guest.getByRole("button", { name: "Join studio" }).click();
  await guest.getByText("Waiting for the host to let you in").waitFor();
  say("guest waiting");

  // The host admits the guest and puts both on stage in split.
  const waiting = host.locator("li[data-name='Gus Guest'][data-state=waiting]");
  await waiting.getByRole("button", { name: "Admit" }).click();
  await guest.locator("main.room[data-state=backstage]").waitFor();
  say("guest admitted");
  await host.locator("li[data-name='Hana']").getByRole("button", { name: "Add to stage" }).click();
  await host.locator("li[data-name='Gus Guest'][data-state=backstage]").getByRole("button", { name: "Add to stage" }).click();
  await host.getByRole("button", { name: "Split" }).click();
  await host.locator("[data-testid=stage][data-layout=split] .tile").nth(1).waitFor();
  await guest.getByText("You are live").waitFor();
  // Both pictures play in the host's stage preview.
  await host.waitForFunction(() =>
    [...document.querySelectorAll("[data-testid=stage] .tile video")].filter((v) => v.readyState >= 2 && v.videoWidth > 0).length === 2);
  say("on stage");

  // A banner, shown.
  await host.getByPlaceholder("Banner text").fill("Good morning from the browser studio");
  await host.getByRole("button", { name: "Add banner" }).click();
  await host.getByRole("button", { name: "Show", exact: true }).click();
  await host.locator("[data-testid=banner]").waitFor();
  await host.getByPlaceholder("Scrolling text").fill("Ticker: questions welcome in the chat, next guest at ten");
  await host.getByRole("button", { name: "Show ticker" }).click();
  await host.locator("[data-testid=ticker]").waitFor();

  // A destination: the local nginx-rtmp.
  await host.getByRole("button", { name: "Add destination" }).click();
  await host.getByLabel("Platform").selectOption("custom");
  await host.getByLabel("Name").fill("Local nginx");
  await host.getByLabel(/Server URL/).fill(rtmpUrl);
  await host.getByLabel("Stream key").fill(streamKey);
  await host.getByRole("button", { name: "Add destination" }).click();
  await host.locator("li[data-destination]").waitFor();

  // Go live, and wait for the destination to say so.
  const wentLive = Date.now();
  await host.getByRole("button", { name: "Go live" }).click();
  await host.locator("li[data-destination] [data-state=live]").waitFor({ timeout: 60000 });
  await host.locator("[data-testid=live-timer]").waitFor();
  say("live", { seconds_to_live_badge: (Date.now() - wentLive) / 1000 });
  await host.waitForTimeout(2000);
  await host.screenshot({ path: screenshot, fullPage: true });
  say("screenshot", { path: screenshot });
  await host.waitForTimeout(seconds * 1000);

  // The guest shares their screen; the host puts it on stage in the
  // screen-share layout, large, with both speakers beside it.
  await guest.getByRole("button", { name: "Share screen" }).click();
  await guest.getByRole("button", { name: "Stop sharing" }).waitFor();
  say("sharing");
  await host.locator("li[data-name='Gus Guest']").getByRole("button", { name: "Add screen" }).click();
  say("screen added");
  await host.getByRole("button", { name: "Screen share" }).click();
  await host.locator("[data-testid=stage][data-layout=screen] .tile").nth(2).waitFor();
  const first = await host.locator("[data-testid=stage] .tile").first().getAttribute("data-source");
  await host.waitForFunction(() => {
    const video = document.querySelector("[data-testid=stage] .tile:first-child video");
    return video && video.readyState >= 2 && video.videoWidth > 0;
  });
  say("screen shared", { main_source: first });
  await host.waitForTimeout(1000);
  say("screen on stage");
  await host.waitForTimeout(15000);
  await host.screenshot({ path: screenshot.replace(/\.png$/, "-screen.png"), fullPage: true });
  // Stopping the share takes the screen off stage.
  await guest.getByRole("button", { name: "Stop sharing" }).click();
  await host.waitForFunction(() => document.querySelectorAll("[data-testid=stage] .tile").length === 2);
  await host.getByRole("button", { name: "Split" }).click();
  await host.locator("[data-testid=stage][data-layout=split] .tile").nth(1).waitFor();

  // The guest reloads mid-show and is back on stage: the host's preview
  // decodes new frames of the guest's tile again.
  const guestTile = "[data-testid=stage] .tile:nth-child(2) video";
  const reloadedAt = Date.now();
  await guest.reload();
  await guest.getByRole("button", { name: "Join studio" }).click();
  await guest.getByText("You are live").waitFor();
  const framesAtRejoin = await host.$eval(guestTile, (v) => v.getVideoPlaybackQuality().totalVideoFrames);
  await host.waitForFunction(([selector, before]) =>
    document.querySelector(selector).getVideoPlaybackQuality().totalVideoFrames > before + 15, [guestTile, framesAtRejoin]);
  say("guest back", { seconds: (Date.now() - reloadedAt) / 1000 });
  await host.waitForTimeout(4000);
  say("done");
} catch (err) {
  console.error(`studio-ui: ${err.message}`);
  // What each page showed when it gave up: its stage and every picture.
  for (const [label, page] of Object.entries(pages)) {
    const seen = await page
      .evaluate(() => ({
        url: location.pathname,
        stage: document.querySelector("[data-testid=stage]")?.getAttribute("data-layout"),
        participants: [...document.querySelectorAll("li[data-name]")].map((li) => `${li.dataset.name}:${li.dataset.state}`),
        tiles: [...document.querySelectorAll("[data-testid=stage] .tile")].map((tile) => {
          const v = tile.querySelector("video");
          return {
            source: tile.dataset.source,
            video: v && { ready: v.readyState, width: v.videoWidth, frames: v.getVideoPlaybackQuality().totalVideoFrames },
          };
        }),
        error: document.querySelector("[role=alert]")?.textContent,
      }))
      .catch((e) => ({ unreadable: e.message }));
    console.error(`studio-ui: ${label} saw ${JSON.stringify(seen)}`);
  }
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
