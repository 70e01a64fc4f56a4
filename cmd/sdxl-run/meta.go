package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"io"
	"os"
	"runtime"
	"sort"
	"strconv"
	"time"

	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
)

// fileHash is one model file's identity for the run record.
type fileHash struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	Error  string `json:"error,omitempty"`
}

// pendingHashes hashes model files in the background while the image is
// generated, so a run can be repeated and verified from the PNG alone
// without adding the hashing time (seconds for real SDXL files) to it.
type pendingHashes chan []fileHash

func hashFiles(paths []string) pendingHashes {
	ch := make(pendingHashes, 1)
	go func() {
		out := make([]fileHash, len(paths))
		for i, p := range paths {
			out[i] = fileHash{Path: p}
			f, err := os.Open(p)
			if err != nil {
				out[i].Error = err.Error()
				continue
			}
			h := sha256.New()
			n, err := io.Copy(h, f)
			f.Close()
			out[i].Size = n
			if err != nil {
				out[i].Error = err.Error()
				continue
			}
			out[i].SHA256 = hex.EncodeToString(h.Sum(nil))
		}
		ch <- out
	}()
	return ch
}

func (p pendingHashes) wait() []fileHash { return <-p }

func modelFiles(e *sdxl.Engine) []string {
	var files []string
	for _, m := range []*sdxl.Model{e.Base(), e.Refiner()} {
		if m != nil {
			files = append(files, m.Files...)
		}
	}
	return files
}

// a1111Samplers names our schedulers the way AUTOMATIC1111's UI does, so
// that tools reading the parameters chunk recognise them.
var a1111Samplers = map[string]string{
	"euler": "Euler", "euler_a": "Euler a", "heun": "Heun", "ddim": "DDIM", "ddpm": "DDPM",
	"pndm": "PLMS", "lms": "LMS", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_karras": "DPM++ 2M",
	"dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_karras": "DPM++ 2M SDE", "dpm_single": "DPM++ 2S",
	"kdpm2": "DPM2", "kdpm2_a": "DPM2 a", "deis": "DEIS", "unipc": "UniPC", "edm_euler": "Euler EDM",
}

type runRecord struct {
	Tool      string            `json:"tool"`
	Version   string            `json:"version"`
	Go        string            `json:"go"`
	Date      string            `json:"date"`
	Device    string            `json:"device"`
	DType     string            `json:"dtype"`
	Flags     map[string]string `json:"flags"`
	Seed      uint64            `json:"seed"`
	Scheduler string            `json:"scheduler_class"`
	Timesteps []float64         `json:"timesteps"`
	Files     []fileHash        `json:"model_files"`
	Seconds   float64           `json:"seconds"`
	Image     int               `json:"image_index,omitempty"`
}

type metadata struct {
	gen imageio.Generation
	rec runRecord
	// batch is --num-images: with several images each PNG's parameters
	// carry AUTOMATIC1111's "Batch size" and "Batch pos" (every image of
	// a batch has the same seed; its position selects its noise slice).
	batch int
}

func runMetadata(o *options, fs *flag.FlagSet, set map[string]bool, seed uint64, res *sdxl.Result, files []fileHash, elapsed time.Duration, dev *device) *metadata {
	flags := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || f.Name == "steps" || f.Name == "guidance" || f.Name == "scheduler" || f.Name == "rng" {
			flags[f.Name] = f.Value.String()
		}
	})
	flags["seed"] = strconv.FormatUint(seed, 10)
	sampler := a1111Samplers[o.scheduler]
	if sampler == "" {
		sampler = o.scheduler
	}
	schedule := ""
	if o.karras || o.scheduler == "dpmpp_2m_karras" || o.scheduler == "dpmpp_2m_sde_karras" {
		schedule = "Karras"
	}
	model := o.model
	if model == "" {
		model = "bundled sdxl-small-base (random weights)"
	}
	g := imageio.Generation{
		Prompt: o.prompt, NegativePrompt: o.negative.v, Steps: o.steps, Sampler: sampler, ScheduleType: schedule,
		CFGScale: o.guidance, Seed: seed, Width: res.ImageShape[3], Height: res.ImageShape[2], Model: model,
	}
	var extra []imageio.Field
	if o.image != "" {
		extra = append(extra, imageio.Field{Key: "Denoising strength", Value: imageio.FormatFloat(o.strength)})
	}
	if o.refiner != "" {
		extra = append(extra, imageio.Field{Key: "Refiner", Value: o.refiner}, imageio.Field{Key: "Refiner switch at", Value: imageio.FormatFloat(o.highNoiseFrac)})
	}
	if o.guidanceRescale != 0 {
		extra = append(extra, imageio.Field{Key: "CFG rescale", Value: imageio.FormatFloat(o.guidanceRescale)})
	}
	if o.prompt2 != "" {
		extra = append(extra, imageio.Field{Key: "Prompt 2", Value: o.prompt2})
	}
	extra = append(extra, imageio.Field{Key: "Version", Value: "sdxl-run " + version()})
	g.Extra = extra
	keys := make([]string, 0, len(flags))
	for k := range flags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return &metadata{batch: o.numImages, gen: g, rec: runRecord{
		Tool: "sdxl-run", Version: version(), Go: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339),
		Device: dev.name, DType: dev.dtype.String(), Flags: flags, Seed: seed, Scheduler: res.Scheduler,
		Timesteps: res.Timesteps, Files: files, Seconds: elapsed.Seconds(),
	}}
}

// chunks returns the PNG text chunks of image i.
func (m *metadata) chunks(i int) ([]imageio.TextChunk, error) {
	rec := m.rec
	rec.Image = i
	run, err := imageio.RunChunk(rec)
	if err != nil {
		return nil, err
	}
	g := m.gen
	if m.batch > 1 {
		g.Extra = append([]imageio.Field{
			{Key: "Batch size", Value: strconv.Itoa(m.batch)},
			{Key: "Batch pos", Value: strconv.Itoa(i)},
		}, g.Extra...)
	}
	return []imageio.TextChunk{{Key: imageio.ParametersKey, Value: g.Parameters().String()}, run}, nil
}
