// Package golden locates the reference data computed with diffusers and
// reads its tensors for tests.
//
// The search order is: the repository's testdata/golden (the compact subset
// shipped with the code), $SDXL_GOLDEN, then ../shared/golden beside the
// repository (where CI keeps the full set). Tests that need a file that is
// absent skip with a message saying where they looked.
package golden

import (
	"encoding/json"
	"image"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/safetensors"
)

// RepoRoot returns the directory holding go.mod: where this file was
// compiled, or, for a test binary copied to another machine (the GPU
// checks), the first folder with a go.mod above the working directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
		return root
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return d
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return root
}

// Dirs lists the candidate golden roots in search order.
func Dirs() []string {
	root := RepoRoot()
	dirs := []string{filepath.Join(root, "testdata", "golden")}
	if env := os.Getenv("SDXL_GOLDEN"); env != "" {
		dirs = append(dirs, env)
	}
	return append(dirs, filepath.Join(root, "..", "shared", "golden"))
}

// bundledModel is the golden small base, shipped in the repository as the
// model embedded in the binary.
const bundledModel = "small/models/sdxl-small-base"

// Find returns the first existing path rel (slash-separated, relative to a
// golden root) or "" if none has it.
func Find(rel string) string {
	if rel == bundledModel || strings.HasPrefix(rel, bundledModel+"/") {
		p := filepath.Join(RepoRoot(), "sdxl", "bundled", filepath.FromSlash(strings.TrimPrefix(rel, "small/models/")))
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	for _, d := range Dirs() {
		p := filepath.Join(d, filepath.FromSlash(rel))
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Path returns the path of rel or skips the test with a clear message.
func Path(t testing.TB, rel string) string {
	t.Helper()
	p := Find(rel)
	if p == "" {
		t.Skipf("golden %q not found in %v (set SDXL_GOLDEN to the golden folder)", rel, Dirs())
	}
	return p
}

// File is an open golden safetensors file with test helpers.
type File struct {
	*safetensors.File
	t testing.TB
}

// Open opens a golden safetensors file (skipping if absent).
func Open(t testing.TB, rel string) *File {
	t.Helper()
	f, err := safetensors.Open(Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &File{f, t}
}

// Get returns a tensor's data and shape, failing the test if absent.
func (f *File) Get(name string) ([]float32, []int) {
	f.t.Helper()
	d, s, err := f.Float32(name)
	if err != nil {
		f.t.Fatal(err)
	}
	return d, s
}

// Has reports whether the file holds name.
func (f *File) Has(name string) bool {
	_, ok := f.Tensors[name]
	return ok
}

// RelErr is ||got-want|| / ||want|| in float64 (the tolerance measure of
// DESIGN.md); when want is all zeros it is ||got||.
func RelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range got {
		d := float64(got[i]) - float64(want[i])
		num += d * d
		den += float64(want[i]) * float64(want[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

// MaxAbs is the largest absolute difference.
func MaxAbs(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range got {
		if d := math.Abs(float64(got[i]) - float64(want[i])); d > m || d != d {
			m = d
		}
	}
	return m
}

// SameBits reports whether two float32 slices hold the same bit patterns
// (NaNs and signed zeros included).
func SameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// MaxLevelDiff is the largest difference, in 8-bit levels, between an
// image's RGB samples and a golden's image_uint8 (NHWC, same size).
func MaxLevelDiff(img image.Image, u8 []float32) float64 {
	b := img.Bounds()
	maxd := 0.0
	for y := range b.Dy() {
		for x := range b.Dx() {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			for c, v := range []uint32{r >> 8, g >> 8, bl >> 8} {
				maxd = math.Max(maxd, math.Abs(float64(v)-float64(u8[(y*b.Dx()+x)*3+c])))
			}
		}
	}
	return maxd
}

// Check fails the test when got differs from want by more than tol relative
// error, and logs the error either way.
func Check(t testing.TB, name string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d elements, want %d", name, len(got), len(want))
		return
	}
	e := RelErr(got, want)
	if !(e <= tol) {
		t.Errorf("%s: relative error %.3g > %.3g (max abs %.3g)", name, e, tol, MaxAbs(got, want))
		return
	}
	t.Logf("%s: relative error %.3g", name, e)
}

// Run holds the fields every scenario index shares.
type Run struct {
	Name      string  `json:"name"`
	Prompt    string  `json:"prompt"`
	Negative  string  `json:"negative"` // "" was passed as None
	Width     int     `json:"width"`
	Height    int     `json:"height"`
	Steps     int     `json:"steps"`
	Guidance  float64 `json:"guidance"`
	Scheduler string  `json:"scheduler"`
	Seed      uint64  `json:"seed"`
	Strength  float64 `json:"strength"`
}

// Scenario is one end-to-end run of golden/small/index.json.
type Scenario struct {
	Run
	Kind        string  `json:"kind"` // txt2img, ensemble or img2img_refiner
	DenoiseFrac float64 `json:"denoise_frac"`
	Compel      bool    `json:"compel"`
	Source      string  `json:"source"` // img2img: the scenario whose image is the input
}

// SmallScenarios reads golden/small/index.json (skipping if absent).
func SmallScenarios(t testing.TB) map[string]Scenario {
	t.Helper()
	return scenarios[Scenario](t, "small/index.json")
}

// scenarios reads the "scenarios" map of an index.json (skipping if
// absent, failing if empty).
func scenarios[T any](t testing.TB, rel string) map[string]T {
	t.Helper()
	b, err := os.ReadFile(Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Scenarios map[string]T `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Scenarios) == 0 {
		t.Fatalf("%s lists no scenarios", rel)
	}
	return idx.Scenarios
}

// ControlNetScenario is one run of golden/controlnet/index.json.
type ControlNetScenario struct {
	Run
	Kind  string  `json:"kind"` // txt2img or img2img
	Scale float64 `json:"scale"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	// ControlPNG and InitImagePNG name files in golden/controlnet.
	ControlPNG   string `json:"control_png"`
	InitImagePNG string `json:"init_image_png"`
	File         string `json:"file"`
	Checks       struct {
		CNStep         int       `json:"cn_step"`
		CondScale      []float64 `json:"cond_scale_per_step"`
		ControlnetKeep []float64 `json:"controlnet_keep"`
	} `json:"checks"`
}

// ControlNetScenarios reads golden/controlnet/index.json (skipping if
// absent).
func ControlNetScenarios(t testing.TB) map[string]ControlNetScenario {
	t.Helper()
	return scenarios[ControlNetScenario](t, "controlnet/index.json")
}

// InpaintScenario is one run of golden/inpaint/index.json.
type InpaintScenario struct {
	Run
	Model string `json:"model"` // base4 (the small base) or inpaint9
	// ImagePNG and MaskPNG name files in golden/inpaint.
	ImagePNG string `json:"input_image_png"`
	MaskPNG  string `json:"mask_png"`
	File     string `json:"file"`
}

// InpaintModels are the folders of InpaintScenario.Model.
var InpaintModels = map[string]string{"base4": "small/models/sdxl-small-base", "inpaint9": "inpaint/models/sdxl-small-inpaint"}

// InpaintScenarios reads golden/inpaint/index.json (skipping if absent).
func InpaintScenarios(t testing.TB) map[string]InpaintScenario {
	t.Helper()
	return scenarios[InpaintScenario](t, "inpaint/index.json")
}
