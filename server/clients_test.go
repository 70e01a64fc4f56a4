package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"testing"

	"github.com/sdxl-go/sdxl/jobs"
)

// The request bodies real clients send to /sdapi/v1, replayed. Each is
// written the way its client builds it; the answers are decoded the way
// the client decodes them.

// Open WebUI (open-webui/open-webui, backend/open_webui/routers/images.py
// at 02530d5, engine "automatic1111"): get_image_model reads
// options['sd_model_checkpoint']; get_models maps sd-models to
// {'id': title, 'name': model_name}; set_image_model posts the whole
// options object back with sd_model_checkpoint changed; image_generations
// posts {prompt, batch_size: n, width, height[, steps][, negative_prompt]}
// merged with the admin's AUTOMATIC1111_PARAMS, then base64-decodes every
// res['images'] entry (no data: prefix: image/png) and stores res['info'].
// Authorization is "Basic base64(AUTOMATIC1111_API_AUTH)", "" without one.
func TestOpenWebUIReplay(t *testing.T) {
	ts := newTestServer(t, jobs.Config{}, func(c *Config) { c.APIKey = "owui-key" })
	auth := map[string]string{"authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:owui-key"))}
	var options map[string]any
	if r := ts.do(t, "GET", "/sdapi/v1/options", "", auth, &options); r.StatusCode != 200 {
		t.Fatalf("options: %d", r.StatusCode)
	}
	var models []struct {
		Title     string `json:"title"`
		ModelName string `json:"model_name"`
	}
	ts.do(t, "GET", "/sdapi/v1/sd-models", "", auth, &models)
	if len(models) != 1 || models[0].Title != options["sd_model_checkpoint"] {
		t.Fatalf("sd-models %v vs options %v", models, options["sd_model_checkpoint"])
	}
	// set_image_model with the model the admin picked from get_models.
	options["sd_model_checkpoint"] = models[0].Title
	b, _ := json.Marshal(options)
	if r := ts.do(t, "POST", "/sdapi/v1/options", string(b), auth, nil); r.StatusCode != 200 {
		t.Fatalf("options post-back: %d", r.StatusCode)
	}
	// image_generations: form n=2, size "64x64" (the admin's IMAGE_SIZE),
	// IMAGE_STEPS 4, a negative prompt, and AUTOMATIC1111_PARAMS
	// {"cfg_scale": 7, "sampler_name": "DPM++ 2M", "scheduler": "Karras"}.
	body := `{"prompt": "a watercolor fox in the snow", "batch_size": 2, "width": 64, "height": 64, "steps": 4,
		"negative_prompt": "blurry", "cfg_scale": 7, "sampler_name": "DPM++ 2M", "scheduler": "Karras"}`
	var res map[string]any
	if r := ts.do(t, "POST", "/sdapi/v1/txt2img", body, auth, &res); r.StatusCode != 200 {
		t.Fatalf("txt2img: %d %v", r.StatusCode, res)
	}
	images, _ := res["images"].([]any)
	if _, ok := res["info"].(string); !ok || len(images) != 2 {
		t.Fatalf("answer: info %T, %d images", res["info"], len(images))
	}
	for _, im := range images {
		s, _ := im.(string)
		data, err := base64.StdEncoding.DecodeString(s) // get_image_data: no ',' → image/png
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	// Without a key configured Open WebUI sends an empty authorization.
	open := newTestServer(t, jobs.Config{}, nil)
	if r := open.do(t, "GET", "/sdapi/v1/options", "", map[string]string{"authorization": ""}, nil); r.StatusCode != 200 {
		t.Errorf("empty authorization on an open server: %d", r.StatusCode)
	}
}

// SillyTavern (SillyTavern/SillyTavern at ba6f7b7):
// public/scripts/extensions/stable-diffusion/index.js generateAutoImage
// builds the body below (defaultSettings: sampler DDIM, scheduler
// "normal", 20 steps, scale 7, 512x512 (here 64x64), hires fix off with
// its fields still sent, seed -1 sent as undefined, clip_skip 1, vae ”
// as undefined), including getSdRequestBody's url and auth; its server
// (src/endpoints/stable-diffusion.js router.post('/generate')) forwards
// the whole body to /sdapi/v1/txt2img with "Authorization: Basic
// base64(auth)" and the client shows data.images[0] as a PNG. Before
// generating, /set-model posts {sd_model_checkpoint} and polls
// /sdapi/v1/progress until progress == 0 and state.job_count === 0.
func TestSillyTavernReplay(t *testing.T) {
	ts := newTestServer(t, jobs.Config{}, func(c *Config) { c.APIKey = "st-key" })
	auth := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("user:st-key"))}
	var models []map[string]any
	ts.do(t, "GET", "/sdapi/v1/sd-models", "", auth, &models)
	b, _ := json.Marshal(map[string]any{"sd_model_checkpoint": models[0]["title"]})
	if r := ts.do(t, "POST", "/sdapi/v1/options", string(b), auth, nil); r.StatusCode != 200 {
		t.Fatalf("set-model: %d", r.StatusCode)
	}
	var progress struct {
		Progress float64 `json:"progress"`
		State    struct {
			JobCount int `json:"job_count"`
		} `json:"state"`
	}
	ts.do(t, "GET", "/sdapi/v1/progress", "", auth, &progress)
	if progress.Progress != 0 || progress.State.JobCount != 0 {
		t.Fatalf("idle progress: %+v", progress)
	}
	for _, path := range []string{"/sdapi/v1/samplers", "/sdapi/v1/schedulers", "/sdapi/v1/upscalers", "/sdapi/v1/latent-upscale-modes", "/sdapi/v1/sd-vae"} {
		var list []map[string]any
		if r := ts.do(t, "GET", path, "", auth, &list); r.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, r.StatusCode)
		}
	}
	body := `{"url": "http://127.0.0.1:7860", "auth": "user:st-key",
		"prompt": "best quality, 1girl, reading a book in a cafe", "negative_prompt": "lowres, bad anatomy",
		"sampler_name": "DDIM", "scheduler": "normal", "steps": 4, "cfg_scale": 7, "width": 64, "height": 64,
		"restore_faces": false, "enable_hr": false, "hr_upscaler": "Latent", "hr_scale": 2,
		"denoising_strength": 0.7, "hr_second_pass_steps": 0,
		"override_settings": {"CLIP_stop_at_last_layers": 1}, "override_settings_restore_afterwards": true,
		"clip_skip": 1, "save_images": true, "send_images": true, "do_not_save_grid": false, "do_not_save_samples": false}`
	var data struct {
		Images []string `json:"images"`
	}
	if r := ts.do(t, "POST", "/sdapi/v1/txt2img", body, auth, &data); r.StatusCode != 200 || len(data.Images) != 1 {
		t.Fatalf("txt2img: %d, %d images", r.StatusCode, len(data.Images))
	}
	img := pngOf(t, data.Images[0]) // { format: 'png', data: data.images[0] }
	if img.Bounds().Dx() != 64 {
		t.Errorf("size %v", img.Bounds())
	}
}
