package server

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sdxl-go/sdxl/jobs"
)

func TestOpenAIImages(t *testing.T) {
	ts := newTestServer(t, jobs.Config{}, nil)
	var res struct {
		Created int64 `json:"created"`
		Data    []struct {
			B64JSON string `json:"b64_json"`
			URL     string `json:"url"`
		} `json:"data"`
	}
	r := ts.do(t, "POST", "/v1/images/generations", `{"model": "dall-e-3", "prompt": "a cat", "n": 2, "size": "64x48",
		"response_format": "b64_json", "quality": "standard", "steps": 2}`, nil, &res)
	if r.StatusCode != 200 || len(res.Data) != 2 || res.Created == 0 {
		t.Fatalf("%d: %+v", r.StatusCode, res)
	}
	if img := pngOf(t, res.Data[1].B64JSON); img.Bounds().Dx() != 64 || img.Bounds().Dy() != 48 {
		t.Errorf("size %v", img.Bounds())
	}
	ts.do(t, "POST", "/v1/images/generations", `{"prompt": "a cat", "size": "64x64", "response_format": "url", "steps": 2}`, nil, &res)
	if len(res.Data) != 1 || !strings.HasPrefix(res.Data[0].URL, ts.URL+"/v1/jobs/") {
		t.Fatalf("url answer: %+v", res)
	}
	if got, err := ts.Client().Get(res.Data[0].URL); err != nil || got.StatusCode != 200 || got.Header.Get("Content-Type") != "image/png" {
		t.Errorf("fetching the url: %v %v", got, err)
	}
	for _, c := range []struct{ body, param string }{
		{`{"prompt": ""}`, "prompt"},
		{`{"prompt": "x", "size": "big"}`, "size"},
		{`{"prompt": "x", "size": "64x60"}`, "height"},
		{`{"prompt": "x", "n": 0}`, "n"},
		{`{"prompt": "x", "n": "2"}`, "n"},
		{`{"prompt": "x", "response_format": "jpeg"}`, "response_format"},
	} {
		var e struct {
			Error struct {
				Message string `json:"message"`
				Type    string `json:"type"`
				Param   string `json:"param"`
			} `json:"error"`
		}
		r := ts.do(t, "POST", "/v1/images/generations", c.body, nil, &e)
		if r.StatusCode != 400 || e.Error.Param != c.param || e.Error.Type != "invalid_request_error" {
			t.Errorf("%s: %d %+v, want 400 with param %s", c.body, r.StatusCode, e, c.param)
		}
	}
}

func TestJobsAPI(t *testing.T) {
	ts := newTestServer(t, jobs.Config{PreviewEvery: 1}, nil)
	st := submit(t, ts, `{"prompt": "a cat", "steps": 6, "width": 64, "height": 64, "n_iter": 2, "seed": 3}`)
	if st.Spec.Seed != 3 || st.Spec.SamplerName != "Euler" || st.Spec.CFGScale != 5 {
		t.Errorf("normalized spec: %+v", st.Spec)
	}
	events := readEvents(t, ts, st.ID)
	var statuses, previews int
	for _, ev := range events {
		switch ev.name {
		case "status":
			statuses++
		case "preview":
			var p struct {
				Image string `json:"image"`
			}
			json.Unmarshal([]byte(ev.data), &p)
			if !strings.HasPrefix(p.Image, "data:image/png;base64,") {
				t.Fatalf("preview: %.60s", p.Image)
			}
			previews++
		}
	}
	last := events[len(events)-1]
	var final jobs.Status
	json.Unmarshal([]byte(last.data), &final)
	if last.name != "end" || final.State != jobs.Done || len(final.Images) != 2 || statuses < 12 || previews < 12 {
		t.Fatalf("events: %d statuses, %d previews, last %s %s with %d images", statuses, previews, last.name, final.State, len(final.Images))
	}
	res, err := ts.Client().Get(ts.URL + final.Images[1].URL)
	if err != nil || res.StatusCode != 200 || res.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("image: %v %v", res, err)
	}
	var got jobs.Status
	ts.do(t, "GET", "/v1/jobs/"+st.ID, "", nil, &got)
	if got.State != jobs.Done || got.Images[1].Seed != 4 {
		t.Errorf("GET job: %+v", got)
	}
	var gallery struct {
		Images []map[string]any `json:"images"`
	}
	ts.do(t, "GET", "/v1/images", "", nil, &gallery)
	if len(gallery.Images) != 2 || gallery.Images[0]["job"] != st.ID {
		t.Errorf("gallery: %v", gallery)
	}
	// A finished job's events are its end.
	if ev := readEvents(t, ts, st.ID); len(ev) != 2 || ev[1].name != "end" {
		t.Errorf("events of a finished job: %v", ev)
	}
	for _, c := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/jobs", `{"prompt": "x", "stpes": 20}`, 422, "stpes: unknown field"},
		{"POST", "/v1/jobs", `{"prompt": "x", "loras": [{"name": "a", "weight": "1"}]}`, 422, "loras[0].weight: want a number"},
		{"POST", "/v1/jobs", `{"prompt": "x", "loras": [{"name": "../../etc/passwd"}]}`, 422, "loras[0].name"},
		{"POST", "/v1/jobs", `{"prompt": "x", "loras": [{"name": "style"}]}`, 422, "no LoRA folder"},
		{"POST", "/v1/jobs", `{"prompt": "x", "refiner": "yes"}`, 422, "refiner: want true or false"},
		{"POST", "/v1/jobs", `{"prompt": "x", "prompt_weighting": "fancy"}`, 422, "prompt_weighting"},
		{"POST", "/v1/jobs", `{"prompt": "x", "rng": "gpu"}`, 422, "rng"},
		{"POST", "/v1/jobs", `{"prompt": "x", "denoising_strength": 0.5}`, 422, "denoising_strength"},
		{"POST", "/v1/jobs", `{"prompt": "x", "width": 64, "height": 64, "mask": "` + testPNG(8, 8) + `"}`, 422, "mask: a mask needs an input image"},
		{"GET", "/v1/jobs/0123456789abcdef", "", 404, "no such job"},
		{"DELETE", "/v1/jobs/0123456789abcdef", "", 404, "no such job"},
		{"GET", "/v1/jobs/0123456789abcdef/events", "", 404, "no such job"},
		{"GET", "/v1/jobs/" + st.ID + "/images/7.png", "", 404, "no such image"},
		{"GET", "/v1/jobs/" + st.ID + "/images/x.png", "", 404, "no such image"},
		{"GET", "/v1/jobs/" + st.ID + "/images/0.jpg", "", 404, "no such image"},
		{"DELETE", "/v1/jobs/" + st.ID, "", 409, "finished"},
	} {
		expectDetail(t, ts, c.method, c.path, c.body, c.code, c.want)
	}
}

// event is one Server-Sent Event.
type event struct{ name, data string }

func readEvents(t *testing.T, ts *testServer, id string) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/v1/jobs/"+id+"/events", nil)
	res, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events content type %q", res.Header.Get("Content-Type"))
	}
	var out []event
	var cur event
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		case line == "" && cur.name != "":
			out = append(out, cur)
			cur = event{}
		}
	}
	return out
}

func TestQueueFullAndCancel(t *testing.T) {
	ts := newTestServer(t, jobs.Config{MaxQueue: 1}, nil)
	running := submit(t, ts, slowJob)
	waitRunning(t, ts, running.ID)
	queued := submit(t, ts, `{"prompt": "x", "steps": 2, "width": 64, "height": 64}`)
	for _, path := range []string{"/v1/jobs", "/sdapi/v1/txt2img"} {
		var d detail
		r := ts.do(t, "POST", path, `{"prompt": "x", "steps": 2, "width": 64, "height": 64}`, nil, &d)
		ra, _ := strconv.Atoi(r.Header.Get("Retry-After"))
		if r.StatusCode != 429 || ra < 1 || !strings.Contains(d.Detail, "queue is full") {
			t.Errorf("%s with a full queue: %d, Retry-After %q, %q", path, r.StatusCode, r.Header.Get("Retry-After"), d.Detail)
		}
	}
	var e map[string]map[string]any
	if r := ts.do(t, "POST", "/v1/images/generations", `{"prompt": "x", "size": "64x64"}`, nil, &e); r.StatusCode != 429 || r.Header.Get("Retry-After") == "" {
		t.Errorf("OpenAI with a full queue: %d %v", r.StatusCode, e)
	}
	var st jobs.Status
	start := time.Now()
	if r := ts.do(t, "DELETE", "/v1/jobs/"+running.ID, "", nil, &st); r.StatusCode != 200 {
		t.Fatalf("cancel: %d", r.StatusCode)
	}
	events := readEvents(t, ts, running.ID)
	json.Unmarshal([]byte(events[len(events)-1].data), &st)
	if st.State != jobs.Cancelled || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled job: %s after %v", st.State, time.Since(start))
	}
	events = readEvents(t, ts, queued.ID)
	json.Unmarshal([]byte(events[len(events)-1].data), &st)
	if st.State != jobs.Done {
		t.Errorf("the queued job after the cancel: %s %s", st.State, st.Error)
	}
}

func TestAuth(t *testing.T) {
	ts := newTestServer(t, jobs.Config{}, func(c *Config) { c.APIKey = "s3cret" })
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, c := range []struct {
		method, path, auth string
		code               int
	}{
		{"GET", "/sdapi/v1/sd-models", "", 401},
		{"GET", "/sdapi/v1/sd-models", "Bearer nope", 401},
		{"GET", "/sdapi/v1/sd-models", "Bearer s3cret", 200},
		{"GET", "/sdapi/v1/sd-models", basic("user:s3cret"), 200}, // Open WebUI's AUTOMATIC1111_API_AUTH "user:KEY"
		{"GET", "/sdapi/v1/sd-models", basic("s3cret"), 200},
		{"GET", "/sdapi/v1/sd-models", basic("user:nope"), 401},
		{"GET", "/sdapi/v1/sd-models", "Basic %%%", 401},
		{"GET", "/v1/jobs", "", 401},
		{"POST", "/v1/images/generations", "", 401},
		{"GET", "/", "", 200},
		{"GET", "/static/app.js", "", 200},
	} {
		r := ts.do(t, c.method, c.path, "", map[string]string{"Authorization": c.auth}, nil)
		if r.StatusCode != c.code {
			t.Errorf("%s %s with %q: %d, want %d", c.method, c.path, c.auth, r.StatusCode, c.code)
		}
		if r.StatusCode == 401 && r.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate")
		}
	}
	expectDetail(t, ts, "POST", "/v1/login", `{"key": "wrong"}`, 401, "wrong API key")
	r := ts.do(t, "POST", "/v1/login", `{"key": "s3cret"}`, nil, nil)
	var cookie *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == keyCookie {
			cookie = c
		}
	}
	if r.StatusCode != 200 || cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %d %v", r.StatusCode, cookie)
	}
	if r := ts.do(t, "GET", "/v1/info", "", map[string]string{"Cookie": keyCookie + "=" + cookie.Value}, nil); r.StatusCode != 200 {
		t.Errorf("with the cookie: %d", r.StatusCode)
	}
}

func TestCORSAndPaths(t *testing.T) {
	plain := newTestServer(t, jobs.Config{}, nil)
	r := plain.do(t, "GET", "/v1/info", "", map[string]string{"Origin": "https://evil.example"}, nil)
	if r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS header without --cors-origin")
	}
	ts := newTestServer(t, jobs.Config{}, func(c *Config) { c.CORSOrigin = "https://app.example" })
	r = ts.do(t, "OPTIONS", "/sdapi/v1/txt2img", "", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}, nil)
	if r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", r.StatusCode, r.Header)
	}
	if r := ts.do(t, "GET", "/v1/info", "", map[string]string{"Origin": "https://other.example"}, nil); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS for another origin")
	}
	// Nothing reaches files: the static files are embedded, paths are
	// cleaned, LoRA names stay in their folder.
	for _, p := range []string{"/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd", "/v1/jobs/..%2f..%2fetc%2fpasswd/images/0.png", "/etc/passwd"} {
		res, err := plain.Client().Get(plain.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		var b [4096]byte
		n, _ := res.Body.Read(b[:])
		res.Body.Close()
		if res.StatusCode == 200 || strings.Contains(string(b[:n]), "root:") {
			t.Errorf("GET %s: %d %.80q", p, res.StatusCode, b[:n])
		}
	}
	page := plain.do(t, "GET", "/", "", nil, nil)
	if !strings.Contains(page.Header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("the playground has no content security policy")
	}
}

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		addr, key string
		insecure  bool
		ok        bool
	}{
		{"127.0.0.1:7860", "", false, true},
		{"localhost:0", "", false, true},
		{"[::1]:7860", "", false, true},
		{"0.0.0.0:7860", "", false, false},
		{":7860", "", false, false},
		{"192.168.1.5:7860", "", false, false},
		{"0.0.0.0:7860", "k", false, true},
		{"0.0.0.0:7860", "", true, true},
		{"7860", "", false, false},
	} {
		if err := CheckListen(c.addr, c.key, c.insecure); (err == nil) != c.ok {
			t.Errorf("CheckListen(%q, %q, %v) = %v", c.addr, c.key, c.insecure, err)
		}
	}
}
