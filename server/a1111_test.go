package server

import (
	"encoding/base64"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sdxl-go/sdxl/jobs"
)

// a1111Response is txt2img's answer.
type a1111Response struct {
	Images     []string       `json:"images"`
	Parameters map[string]any `json:"parameters"`
	Info       string         `json:"info"`
}

func TestTxt2Img(t *testing.T) {
	ts := newTestServer(t, jobs.Config{}, nil)
	var res a1111Response
	r := ts.do(t, "POST", "/sdapi/v1/txt2img", `{"prompt": "a cat", "negative_prompt": "dog", "steps": 3, "width": 64,
		"height": 96, "seed": 42, "batch_size": 2, "n_iter": 2, "sampler_name": "Euler a", "cfg_scale": 6.5,
		"some_field_of_a_newer_a1111": {"x": 1}, "send_images": true}`, nil, &res)
	if r.StatusCode != http.StatusOK || len(res.Images) != 4 {
		t.Fatalf("%d, %d images", r.StatusCode, len(res.Images))
	}
	for _, b := range res.Images {
		if img := pngOf(t, b); img.Bounds().Dx() != 64 || img.Bounds().Dy() != 96 {
			t.Errorf("image size %v", img.Bounds())
		}
	}
	var info struct {
		Seed      uint64   `json:"seed"`
		AllSeeds  []uint64 `json:"all_seeds"`
		Infotexts []string `json:"infotexts"`
		Width     int      `json:"width"`
	}
	if err := json.Unmarshal([]byte(res.Info), &info); err != nil {
		t.Fatalf("info is not a JSON string: %v", err)
	}
	if info.Seed != 42 || len(info.AllSeeds) != 4 || info.AllSeeds[2] != 44 || len(info.Infotexts) != 4 || info.Width != 64 {
		t.Errorf("info: %+v", info)
	}
	if !strings.Contains(info.Infotexts[0], "Steps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6.5, Seed: 42, Size: 64x96") {
		t.Errorf("infotext: %s", info.Infotexts[0])
	}
	if res.Parameters["prompt"] != "a cat" {
		t.Errorf("parameters: %v", res.Parameters)
	}
}

func TestTxt2ImgBadInputs(t *testing.T) {
	ts := newTestServer(t, jobs.Config{}, func(c *Config) { c.MaxBodyBytes = 1 << 16 })
	for _, c := range []struct {
		body string
		code int
		want string
	}{
		{`{"prompt": "a cat", "steps": 2`, 422, "malformed JSON"},
		{`["prompt"]`, 422, "not a JSON object"},
		{``, 422, "empty"},
		{`{"prompt": 5}`, 422, "prompt: want a string, got a number"},
		{`{"prompt": "x", "steps": "20"}`, 422, "steps: want an integer, got a string"},
		{`{"prompt": "x", "steps": 20.5}`, 422, "steps: 20.5 is not an integer"},
		{`{"prompt": "x", "cfg_scale": "high"}`, 422, "cfg_scale: want a number"},
		{`{"prompt": "x", "width": 100000, "height": 100000}`, 422, "width"},
		{`{"prompt": "x", "width": 4096, "height": 4096}`, 422, "over this server's limit"},
		{`{"prompt": "x", "width": 100, "height": 64}`, 422, "width: 100 is not a multiple of 8"},
		{`{"prompt": "x", "steps": 5000}`, 422, "steps: 5000 is out of range"},
		{`{"prompt": "x", "batch_size": 50}`, 422, "batch_size"},
		{`{"prompt": "x", "seed": -7}`, 422, "seed"},
		{`{"prompt": "x", "sampler_name": "Euler Turbo"}`, 422, `sampler_name: "Euler Turbo" is not available`},
		{`{"prompt": "x", "sampler_index": "k_nope"}`, 422, "sampler_name"},
		{`{"prompt": "x", "scheduler": "Align Your Steps"}`, 422, "scheduler"},
		{`{"prompt": "x", "sampler_name": "Euler a", "scheduler": "Karras"}`, 422, "scheduler: \"Karras\": euler_a has no Karras sigmas"},
		{`{"prompt": "x", "enable_hr": true}`, 422, "enable_hr: the hires fix is not available"},
		{`{"prompt": "x", "alwayson_scripts": {"controlnet": {"args": []}}}`, 422, "alwayson_scripts: scripts are not available (controlnet)"},
		{`{"prompt": "x", "restore_faces": true}`, 422, "restore_faces"},
		{`{"prompt": "x", "subseed_strength": 0.5}`, 422, "subseed"},
		{`{"prompt": "x", "styles": ["cinematic"]}`, 422, "styles"},
		{`{"prompt": "x", "override_settings": {"sd_model_checkpoint": "juggernaut.safetensors"}}`, 422, "override_settings.sd_model_checkpoint"},
		{`{"prompt": "x", "override_settings": {"sd_vae": "sdxl_vae.safetensors"}}`, 422, "override_settings.sd_vae"},
		{`{"prompt": "x", "override_settings": 3}`, 422, "override_settings: want an object"},
		{`{"prompt": "x", "refiner_checkpoint": "sd_xl_refiner_1.0"}`, 422, "refiner_checkpoint"},
		{`{"prompt": "` + strings.Repeat("x", 70000) + `"}`, 413, "over the limit"},
	} {
		expectDetail(t, ts, "POST", "/sdapi/v1/txt2img", c.body, c.code, c.want)
	}
	// The model's own names are accepted, and A1111's defaults for the
	// unsupported features too.
	var res a1111Response
	r := ts.do(t, "POST", "/sdapi/v1/txt2img", `{"prompt": "x", "steps": 2, "width": 64, "height": 64, "enable_hr": false,
		"restore_faces": false, "alwayson_scripts": {}, "styles": [], "subseed_strength": 0, "seed_resize_from_h": -1,
		"refiner_checkpoint": "", "override_settings": {"sd_model_checkpoint": "sdxl-small-base [bf141bf22d]", "sd_vae": "Automatic"}}`, nil, &res)
	if r.StatusCode != 200 || len(res.Images) != 1 {
		t.Errorf("defaults of unsupported features: %d", r.StatusCode)
	}
}

func TestImg2Img(t *testing.T) {
	ts := newTestServer(t, jobs.Config{}, nil)
	var res a1111Response
	body := `{"prompt": "a cat", "init_images": ["data:image/png;base64,` + testPNG(40, 40) + `"], "steps": 4,
		"denoising_strength": 0.5, "width": 64, "height": 48, "seed": 1, "include_init_images": false}`
	if r := ts.do(t, "POST", "/sdapi/v1/img2img", body, nil, &res); r.StatusCode != 200 || len(res.Images) != 1 {
		t.Fatalf("%d: %v", r.StatusCode, res)
	}
	if img := pngOf(t, res.Images[0]); img.Bounds().Dx() != 64 || img.Bounds().Dy() != 48 {
		t.Errorf("img2img size %v, want the requested 64x48", img.Bounds())
	}
	if !strings.Contains(infotexts(t, res)[0], "Denoising strength: 0.5") {
		t.Errorf("infotext: %s", infotexts(t, res)[0])
	}
	if res.Parameters["init_images"] != nil {
		t.Errorf("the input image was echoed")
	}
	huge := base64.StdEncoding.EncodeToString(pngHeader(20000, 20000))
	for _, c := range []struct {
		body, want string
	}{
		{`{"prompt": "x"}`, "init_images: img2img needs an input image"},
		{`{"prompt": "x", "init_images": "abc"}`, "init_images: want a list of strings"},
		{`{"prompt": "x", "init_images": ["%%%not base64"]}`, "init_images[0]: not base64"},
		{`{"prompt": "x", "init_images": ["` + base64.StdEncoding.EncodeToString([]byte("plain text, not an image")) + `"]}`, "init_images[0]: not a PNG or JPEG image"},
		{`{"prompt": "x", "init_images": ["` + huge + `"]}`, "over the limit"},
		{`{"prompt": "x", "init_images": ["https://example.com/cat.png"]}`, "URLs are not fetched"},
		{`{"prompt": "x", "init_images": ["` + testPNG(8, 8) + `", "` + testPNG(8, 8) + `"]}`, "one input image"},
		{`{"prompt": "x", "init_images": ["` + testPNG(8, 8) + `"], "resize_mode": 2}`, "resize_mode"},
		{`{"prompt": "x", "init_images": ["` + testPNG(64, 64) + `"], "mask": "!!"}`, "mask: not base64"},
		{`{"prompt": "x", "init_images": ["` + testPNG(64, 64) + `"], "denoising_strength": 1.5}`, "denoising_strength"},
	} {
		expectDetail(t, ts, "POST", "/sdapi/v1/img2img", c.body, 422, c.want)
	}
}

// pngHeader is the start of a PNG declaring w x h pixels (no pixel data).
func pngHeader(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
	b = append(b, byte(w>>24), byte(w>>16), byte(w>>8), byte(w), byte(h>>24), byte(h>>16), byte(h>>8), byte(h), 8, 2, 0, 0, 0)
	c := crc32.ChecksumIEEE(b[12:])
	return append(b, byte(c>>24), byte(c>>16), byte(c>>8), byte(c))
}

func infotexts(t *testing.T, res a1111Response) []string {
	var info struct {
		Infotexts []string `json:"infotexts"`
	}
	if err := json.Unmarshal([]byte(res.Info), &info); err != nil {
		t.Fatal(err)
	}
	return info.Infotexts
}

func TestProgressInterruptSkip(t *testing.T) {
	ts := newTestServer(t, jobs.Config{PreviewEvery: 1}, nil)
	var idle map[string]any
	ts.do(t, "GET", "/sdapi/v1/progress", "", nil, &idle)
	if idle["progress"] != 0.0 || idle["current_image"] != nil {
		t.Errorf("idle progress: %v", idle)
	}
	var wg sync.WaitGroup
	var res a1111Response
	var code int
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := ts.do(t, "POST", "/sdapi/v1/txt2img", `{"prompt": "slow", "width": 128, "height": 128, "steps": 1000, "n_iter": 2}`, nil, &res)
		code = r.StatusCode
	}()
	var cur struct {
		ID string
	}
	for cur.ID == "" {
		if st, _, _, ok := ts.jobs.Current(); ok && st.Step > 1 {
			cur.ID = st.ID
		}
	}
	var p struct {
		Progress     float64        `json:"progress"`
		State        map[string]any `json:"state"`
		CurrentImage *string        `json:"current_image"`
		TextInfo     string         `json:"textinfo"`
	}
	ts.do(t, "GET", "/sdapi/v1/progress", "", nil, &p)
	if p.Progress <= 0 || p.CurrentImage == nil || p.State["job_count"] != 1.0 || p.State["sampling_steps"] != 1000.0 {
		t.Errorf("progress while running: %+v", p)
	} else if img := pngOf(t, *p.CurrentImage); img.Bounds().Dx() != 16 {
		t.Errorf("preview size %v", img.Bounds())
	}
	ts.do(t, "GET", "/sdapi/v1/progress?skip_current_image=true", "", nil, &p)
	if p.CurrentImage != nil {
		t.Errorf("skip_current_image still sent it")
	}
	if r := ts.do(t, "POST", "/sdapi/v1/skip", "", nil, nil); r.StatusCode != 200 {
		t.Errorf("skip: %d", r.StatusCode)
	}
	for st, _ := ts.jobs.Get(cur.ID); st.Batch != 2; st, _ = ts.jobs.Get(cur.ID) {
	}
	if r := ts.do(t, "POST", "/sdapi/v1/interrupt", "", nil, nil); r.StatusCode != 200 {
		t.Errorf("interrupt: %d", r.StatusCode)
	}
	wg.Wait()
	if code != 200 || len(res.Images) != 0 {
		t.Errorf("interrupted txt2img: %d with %d images", code, len(res.Images))
	}
	if st, _ := ts.jobs.Get(cur.ID); st.State != jobs.Cancelled {
		t.Errorf("interrupted job: %s", st.State)
	}
}

func TestListsAndOptions(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"style.safetensors", "sub/detail.safetensors", "notes.txt", ".hidden.safetensors", ".cache/x.safetensors"} {
		p := filepath.Join(dir, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte("{}"), 0o644)
	}
	outside := filepath.Join(t.TempDir(), "secret.safetensors")
	os.WriteFile(outside, []byte("{}"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "link.safetensors"))
	os.Symlink(filepath.Dir(outside), filepath.Join(dir, "linkdir"))
	ts := newTestServer(t, jobs.Config{}, func(c *Config) { c.LoRADir = dir })
	var loras []map[string]any
	ts.do(t, "GET", "/sdapi/v1/loras", "", nil, &loras)
	var names []string
	for _, l := range loras {
		names = append(names, l["name"].(string))
	}
	if strings.Join(names, ",") != "style,sub/detail" {
		t.Errorf("loras: %v (symbolic links, hidden files and other files must not be listed)", names)
	}
	var samplers, schedulers, models []map[string]any
	ts.do(t, "GET", "/sdapi/v1/samplers", "", nil, &samplers)
	ts.do(t, "GET", "/sdapi/v1/schedulers", "", nil, &schedulers)
	ts.do(t, "GET", "/sdapi/v1/sd-models", "", nil, &models)
	if len(samplers) < 10 || samplers[0]["name"] != "Euler" || len(schedulers) != 3 || schedulers[2]["label"] != "Karras" {
		t.Errorf("samplers %v, schedulers %v", samplers, schedulers)
	}
	if len(models) != 1 || models[0]["title"] != "sdxl-small-base [bf141bf22d]" || models[0]["model_name"] != "sdxl-small-base" {
		t.Errorf("sd-models: %v", models)
	}
	var opts map[string]any
	ts.do(t, "GET", "/sdapi/v1/options", "", nil, &opts)
	if opts["sd_model_checkpoint"] != "sdxl-small-base [bf141bf22d]" {
		t.Errorf("options: %v", opts)
	}
	// Clients post back what they read, with their changes.
	opts["CLIP_stop_at_last_layers"], opts["some_ui_setting"] = 2, "x"
	b, _ := json.Marshal(opts)
	if r := ts.do(t, "POST", "/sdapi/v1/options", string(b), nil, nil); r.StatusCode != 200 {
		t.Errorf("posting the options back: %d", r.StatusCode)
	}
	ts.do(t, "GET", "/sdapi/v1/options", "", nil, &opts)
	if opts["CLIP_stop_at_last_layers"] != 2.0 || opts["some_ui_setting"] != "x" {
		t.Errorf("options after POST: %v", opts)
	}
	expectDetail(t, ts, "POST", "/sdapi/v1/options", `{"sd_model_checkpoint": "other.safetensors"}`, 422, "is not loaded")
	expectDetail(t, ts, "POST", "/sdapi/v1/options", `{"CLIP_stop_at_last_layers": 40}`, 422, "CLIP_stop_at_last_layers")
	expectDetail(t, ts, "POST", "/sdapi/v1/options", `[1]`, 422, "JSON object")
}

func TestPNGInfo(t *testing.T) {
	ts := newTestServer(t, jobs.Config{}, nil)
	var res a1111Response
	ts.do(t, "POST", "/sdapi/v1/txt2img", `{"prompt": "a lighthouse, night", "negative_prompt": "blurry", "steps": 2, "width": 64, "height": 64, "seed": 5}`, nil, &res)
	var info struct {
		Info       string            `json:"info"`
		Items      map[string]string `json:"items"`
		Parameters map[string]any    `json:"parameters"`
	}
	if r := ts.do(t, "POST", "/sdapi/v1/png-info", `{"image": "data:image/png;base64,`+res.Images[0]+`"}`, nil, &info); r.StatusCode != 200 {
		t.Fatalf("png-info: %d", r.StatusCode)
	}
	p := info.Parameters
	if p["Prompt"] != "a lighthouse, night" || p["Negative prompt"] != "blurry" || p["Steps"] != "2" || p["Seed"] != "5" ||
		p["Size-1"] != "64" || p["Sampler"] != "Euler" || !strings.Contains(info.Items["sdxl-run"], `"tool": "sdxl-run serve"`) {
		t.Errorf("png-info: %+v", info)
	}
	var empty struct {
		Info string `json:"info"`
	}
	if r := ts.do(t, "POST", "/sdapi/v1/png-info", `{"image": "`+testPNG(8, 8)+`"}`, nil, &empty); r.StatusCode != 200 || empty.Info != "" {
		t.Errorf("PNG without parameters: %d %q", r.StatusCode, empty.Info)
	}
	for _, c := range []struct{ body, want string }{
		{`{"image": "###"}`, "image: not base64"},
		{`{"image": "` + base64.StdEncoding.EncodeToString([]byte("GIF89a... not really")) + `"}`, "not a PNG or JPEG"},
		{`{"image": 3}`, "image: want a base64 string"},
		{`not json`, "body"},
	} {
		expectDetail(t, ts, "POST", "/sdapi/v1/png-info", c.body, 422, c.want)
	}
}
