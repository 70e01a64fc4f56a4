package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/sdxl-go/sdxl/jobs"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// chromium finds the browser. Without one the test skips, except in CI
// (CI is set), where .ci/run installs Debian's chromium and the browser
// test must run.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium in CI: .ci/run installs it (apt-get install chromium); the browser test must run there")
	}
	t.Skip("no chromium on this machine (apt-get install chromium): the playground's browser test is skipped; in CI it runs")
	return ""
}

// screenshotDir keeps the browser test's screenshots:
// $SDXL_SCREENSHOT_DIR, or sdxl-serve-screenshots in the temporary folder.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("SDXL_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "sdxl-serve-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browserCtx starts a headless Chromium with a fresh profile and nothing
// that talks to the network on its own.
func browserCtx(t *testing.T) context.Context {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

// page drives one browser tab.
type page struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

// do runs actions, failing the test on an error.
func (p *page) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// js evaluates an expression for its string value.
func (p *page) js(expr string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string]("String("+expr+")"))
	if err != nil {
		p.t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// value is a form field's value.
func (p *page) value(id string) string { return p.js("document.getElementById('" + id + "').value") }

// until polls an expression until it is true.
func (p *page) until(what, expr string, d time.Duration) {
	p.t.Helper()
	if _, err := chromedp.Run(p.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(d))); err != nil {
		p.t.Fatalf("%s (%s): %v", what, expr, err)
	}
}

// shot keeps a screenshot of the whole page.
func (p *page) shot(name string) {
	p.t.Helper()
	b, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatal(err)
	}
	path := filepath.Join(p.shots, name+".png")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s", path)
}

// setValue sets a form field and fires its input and change events.
func setValue(sel, v string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q;
		e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); })()`, sel, v))
}

// TestPlaygroundInBrowser drives the playground as a user: type a prompt,
// pick 16:9 (at the ×¼ draft scale: 336x192 with the bundled model),
// generate, watch the progress and the previews move, see the image at
// its size, open it, download it, reuse its settings, drop a PNG on the
// page and see the form filled, cancel a long job, and look at the page at
// phone width. Screenshots are kept (see screenshotDir).
func TestPlaygroundInBrowser(t *testing.T) {
	ctx := browserCtx(t)
	loras := t.TempDir()
	for _, f := range []string{"detail.safetensors", "styles/ink.safetensors"} {
		os.MkdirAll(filepath.Dir(filepath.Join(loras, f)), 0o755)
		os.WriteFile(filepath.Join(loras, f), []byte("{}"), 0o644) // listed, never loaded
	}
	ts := newTestServer(t, jobs.Config{PreviewEvery: time.Millisecond}, func(c *Config) { c.LoRADir = loras })
	p := &page{t: t, ctx: ctx, shots: screenshotDir(t)}
	p.do("open the page", chromedp.Navigate(ts.URL), chromedp.WaitVisible(chromedp.ID("app")),
		chromedp.WaitVisible(chromedp.CSS(`#ratios button[data-ratio="16:9"]`)))
	p.shot("1-open")
	p.do("fill the form", chromedp.SendKeys(chromedp.ID("prompt"), "a lighthouse at dusk, oil painting"),
		setValue("#scale", "0.25"), chromedp.Click(chromedp.CSS(`#ratios button[data-ratio="16:9"]`)), setValue("#steps", "40"))
	if w, h := p.value("width"), p.value("height"); w != "336" || h != "192" {
		t.Fatalf("16:9 at ×¼ is %sx%s, want 336x192", w, h)
	}
	p.do("generate", chromedp.Click(chromedp.ID("generate")))
	p.watchProgress()
	p.checkResult()
	p.downloadAndReuse()
	p.dropPNG(ts)
	p.pickLoRA()
	p.cancelLongJob()
	p.phoneWidth()
}

// pickLoRA adds a LoRA of the folder with a strength: the job the form
// makes carries it.
func (p *page) pickLoRA() {
	p.do("pick a LoRA", setValue("#lora-pick", "styles/ink"), chromedp.Click(chromedp.ID("lora-add")),
		chromedp.WaitVisible(chromedp.CSS("#loras li input")), setValue("#loras li input", "0.7"))
	p.shot("6-lora")
	if got := p.js("JSON.stringify(job().loras)"); got != `[{"name":"styles/ink","weight":0.7}]` {
		p.t.Fatalf("the job's LoRAs: %s", got)
	}
	p.do("remove it", chromedp.Click(chromedp.CSS("#loras li button")))
	if got := p.js("JSON.stringify(job().loras)"); got != "undefined" {
		p.t.Fatalf("after removing: %s", got)
	}
}

// watchProgress samples the progress bar and the preview while the job
// runs: both must change several times.
func (p *page) watchProgress() {
	progress, previews := map[string]bool{}, map[string]bool{}
	took := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		progress[p.js("document.getElementById('progress').value")] = true
		if src := p.js("document.getElementById('preview').hidden ? '' : document.getElementById('preview').src"); src != "" {
			previews[src] = true
			if !took && len(previews) >= 3 {
				took = true
				p.shot("2-progress-preview")
			}
		}
		if p.js("!document.getElementById('result').hidden") == "true" {
			break
		}
	}
	p.t.Logf("saw %d progress values and %d preview frames", len(progress), len(previews))
	if len(progress) < 4 || len(previews) < 3 {
		p.t.Fatalf("progress and previews did not move: %d progress values, %d previews", len(progress), len(previews))
	}
}

// checkResult: the image is shown at its size and listed in the gallery.
func (p *page) checkResult() {
	p.until("the result loads", "document.getElementById('result').complete && document.getElementById('result').naturalWidth > 0", 30*time.Second)
	p.do("the gallery", chromedp.WaitVisible(chromedp.CSS("#gallery img")))
	nw, nh := p.js("document.getElementById('result').naturalWidth"), p.js("document.getElementById('result').naturalHeight")
	status := p.js("document.getElementById('status').textContent")
	p.shot("3-result")
	if nw != "336" || nh != "192" || status != "Done." {
		p.t.Fatalf("result %sx%s, status %q; want 336x192, Done.", nw, nh, status)
	}
}

// downloadAndReuse opens the image from the gallery, downloads the PNG
// (its metadata must be there) and reuses its settings.
func (p *page) downloadAndReuse() {
	dl := p.t.TempDir()
	if _, err := chromedp.CallBrowser(p.ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl}); err != nil {
		p.t.Fatal(err)
	}
	p.do("open the viewer", chromedp.Click(chromedp.CSS("#gallery img")), chromedp.WaitVisible(chromedp.ID("viewer")))
	p.shot("4-viewer")
	p.do("download", chromedp.Click(chromedp.ID("download")))
	var files []string
	for deadline := time.Now().Add(30 * time.Second); len(files) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(dl, "*.png"))
	}
	if len(files) != 1 {
		p.t.Fatalf("downloaded files: %v", files)
	}
	m, err := imageio.ReadPNGMetadata(files[0])
	if err != nil || !strings.Contains(m.Parameters, "a lighthouse at dusk, oil painting\nNegative prompt: \nSteps: 40") ||
		!strings.Contains(m.Parameters, "Size: 336x192") || !strings.Contains(m.Run, `"tool": "sdxl-run serve"`) {
		p.t.Fatalf("downloaded PNG %s: %v\n%s", files[0], err, m.Parameters)
	}
	p.do("reuse settings", setValue("#prompt", "something else"), setValue("#steps", "3"),
		chromedp.Click(chromedp.ID("reuse")), chromedp.WaitNotVisible(chromedp.ID("viewer")))
	prompt, steps, seed, locked := p.value("prompt"), p.value("steps"), p.value("seed"), p.js("document.getElementById('lock').checked")
	if prompt != "a lighthouse at dusk, oil painting" || steps != "40" || locked != "true" || !strings.Contains(m.Parameters, "Seed: "+seed+",") {
		p.t.Fatalf("reused settings: prompt %q, steps %s, seed %s (locked %s)", prompt, steps, seed, locked)
	}
}

// dropPNG drops a PNG made by another run on the page: its parameters
// fill the form.
func (p *page) dropPNG(ts *testServer) {
	var res a1111Response
	ts.do(p.t, "POST", "/sdapi/v1/txt2img", `{"prompt": "a dropped astronaut", "negative_prompt": "fog", "steps": 7,
		"width": 64, "height": 48, "seed": 99, "cfg_scale": 4.5, "sampler_name": "DPM++ 2M", "scheduler": "Karras"}`, nil, &res)
	if b, _ := base64.StdEncoding.DecodeString(res.Images[0]); !bytes.HasPrefix(b, []byte("\x89PNG")) {
		p.t.Fatal("no PNG to drop")
	}
	js := fmt.Sprintf(`(() => {
		const b = Uint8Array.from(atob(%q), (c) => c.charCodeAt(0));
		const dt = new DataTransfer();
		dt.items.add(new File([b], 'dropped.png', {type: 'image/png'}));
		window.dispatchEvent(new DragEvent('dragenter', {dataTransfer: dt, bubbles: true}));
		window.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
	})()`, res.Images[0])
	p.do("drop a PNG", chromedp.Evaluate[chromedp.Void](js))
	p.until("the form is filled", "document.getElementById('prompt').value === 'a dropped astronaut'", 20*time.Second)
	var got []string
	for _, id := range []string{"prompt", "negative", "steps", "width", "height", "seed", "cfg", "sampler", "schedule"} {
		got = append(got, p.value(id))
	}
	p.shot("5-dropped-png")
	if g, want := strings.Join(got, "|"), "a dropped astronaut|fog|7|64|48|99|4.5|DPM++ 2M|Karras"; g != want {
		p.t.Fatalf("form after the drop: %s, want %s", g, want)
	}
}

// cancelLongJob starts a long job and cancels it from the page.
func (p *page) cancelLongJob() {
	p.do("start a long job", setValue("#width", "336"), setValue("#height", "192"), setValue("#steps", "150"),
		setValue("#count", "4"), chromedp.Click(chromedp.ID("generate")))
	p.until("it runs", "document.getElementById('status').textContent.startsWith('batch')", 30*time.Second)
	p.do("the queue", chromedp.WaitVisible(chromedp.CSS("#queue li")))
	p.shot("7-running-queue")
	p.do("cancel", chromedp.Click(chromedp.ID("cancel")))
	p.until("cancelled", "document.getElementById('status').textContent === 'Cancelled.'", 30*time.Second)
}

// phoneWidth: at 390 pixels wide nothing overflows sideways.
func (p *page) phoneWidth() {
	p.do("phone width", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulatePortrait),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("app")), chromedp.WaitVisible(chromedp.CSS("#gallery img")))
	scroll := p.js("document.documentElement.scrollWidth")
	p.shot("8-phone")
	if n, _ := strconv.Atoi(scroll); n > 390 {
		p.t.Errorf("at phone width the page is %s pixels wide", scroll)
	}
}
