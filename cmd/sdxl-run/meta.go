package main

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
	"github.com/sdxl-go/sdxl/sdxl/hashes"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
)

// fileHash is one model file's identity for the run record.
type fileHash struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"`
	Error  string `json:"error,omitempty"`
}

// modelRef names one loaded model the way the parameters chunk does.
type modelRef struct {
	Role string `json:"role"` // "base" or "refiner"
	Path string `json:"path"`
	// Name is A1111's name_for_extra: the file name without extension, or
	// the folder's name.
	Name string `json:"name"`
	// Hash is A1111's short model hash, the first 10 hex digits of the
	// SHA-256 of HashOf: the checkpoint file, or for a diffusers folder
	// (which has no single checkpoint) its UNet weights file.
	Hash   string `json:"hash,omitempty"`
	HashOf string `json:"hash_of,omitempty"`
}

// runHashes are the model files' hashes and the models they identify.
type runHashes struct {
	files  []fileHash
	models []modelRef
}

// pendingHashes hashes model files in the background while the image is
// generated. Hashes come from the cache (package hashes) after the first
// run on a file, so a 6.9 GB checkpoint is read once, not on every run.
type pendingHashes chan runHashes

// extra are more weight files to hash (the ControlNets').
func hashFiles(ctx context.Context, e *sdxl.Engine, extra []string) pendingHashes {
	files, models := append(modelFiles(e), extra...), modelRefs(e)
	ch := make(pendingHashes, 1)
	go func() {
		cache := hashes.Default()
		out := make([]fileHash, len(files))
		sums := map[string]string{}
		for i, path := range files {
			out[i] = fileHash{Path: path}
			if st, err := os.Stat(path); err == nil {
				out[i].Size = st.Size()
			}
			// A cache that cannot be written still returns the digest.
			sum, err := cache.SHA256(ctx, path)
			if sum == "" {
				out[i].Error = err.Error()
				continue
			}
			out[i].SHA256, sums[path] = sum, sum
		}
		for i := range models {
			models[i].Hash = hashes.ModelHash(sums[models[i].HashOf])
		}
		ch <- runHashes{out, models}
	}()
	return ch
}

func (p pendingHashes) wait() runHashes { return <-p }

func modelFiles(e *sdxl.Engine) []string {
	var files []string
	for _, m := range []*sdxl.Model{e.Base(), e.Refiner()} {
		if m != nil {
			files = append(files, m.Files...)
		}
	}
	return files
}

func modelRefs(e *sdxl.Engine) []modelRef {
	var refs []modelRef
	for _, r := range []struct {
		role string
		m    *sdxl.Model
	}{{"base", e.Base()}, {"refiner", e.Refiner()}} {
		if r.m != nil {
			refs = append(refs, modelRef{Role: r.role, Path: r.m.Path, Name: modelName(r.m.Path), HashOf: modelHashFile(r.m)})
		}
	}
	return refs
}

// modelName is A1111's CheckpointInfo.name_for_extra: the base name without
// extension; a folder keeps its whole name.
func modelName(path string) string {
	base := filepath.Base(path)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return base
	}
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// modelHashFile is the file whose SHA-256 makes the model hash: the
// checkpoint itself, or a diffusers folder's (first) UNet weights file.
func modelHashFile(m *sdxl.Model) string {
	if st, err := os.Stat(m.Path); err == nil && !st.IsDir() {
		return m.Path
	}
	unet := filepath.Join(m.Path, "unet")
	for _, f := range m.Files {
		if filepath.Dir(f) == unet {
			return f
		}
	}
	return ""
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
	Models    []modelRef        `json:"models"`
	// ControlNets are the --controlnet groups in order (a flag given
	// several times does not fit Flags).
	ControlNets []controlRecord `json:"controlnets,omitempty"`
	// LoRAs are the LoRAs applied, --lora files and prompt tags, in order.
	LoRAs   []loraRecord `json:"loras,omitempty"`
	Files   []fileHash   `json:"model_files"`
	Seconds float64      `json:"seconds"`
	Image   int          `json:"image_index,omitempty"`
}

type metadata struct {
	params infotext.Params
	rec    runRecord
	// batch is --num-images: with several images each PNG's parameters
	// carry "Batch size" and "Batch pos" (the names of A1111 before 1.6;
	// every image of our batch has the same seed, its position selects its
	// noise slice).
	batch int
}

func runMetadata(o *options, fs *flag.FlagSet, set map[string]bool, seed uint64, res *sdxl.Result, h runHashes, elapsed time.Duration, dev *device) *metadata {
	flags := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "lora" {
			return // repeated: the run record's loras list them
		}
		if set[f.Name] || f.Name == "steps" || f.Name == "guidance" || f.Name == "scheduler" || f.Name == "rng" {
			flags[f.Name] = f.Value.String()
		}
	})
	flags["seed"] = strconv.FormatUint(seed, 10)
	if o.model == "" && len(h.models) > 0 && h.models[0].Role == "base" {
		h.models[0].Name = bundled.Name
	}
	return &metadata{batch: o.numImages, params: o.infotext(seed, res, h.models), rec: runRecord{
		Tool: "sdxl-run", Version: version(), Go: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339),
		Device: dev.name, DType: dev.dtype.String(), Flags: flags, Seed: seed, Scheduler: res.Scheduler,
		Timesteps: res.Timesteps, Models: h.models, Files: h.files, Seconds: elapsed.Seconds(),
		ControlNets: o.control.records(), LoRAs: loraRecords(res.LoRAs),
	}}
}

// infotext describes the run in AUTOMATIC1111's terms.
func (o *options) infotext(seed uint64, res *sdxl.Result, models []modelRef) infotext.Params {
	sampler, schedule, err := infotext.Sampler(o.scheduler, o.karras)
	if err != nil {
		sampler, schedule = o.scheduler, ""
	}
	p := infotext.Params{
		Prompt: o.loras.promptWithTags(o.prompt), NegativePrompt: o.negative.v, Steps: o.steps, Sampler: sampler, ScheduleType: schedule,
		CFGScale: o.guidance, Seed: seed, Width: res.ImageShape[3], Height: res.ImageShape[2],
		ClipSkip: infotext.ClipSkipFor(o.clipSkip), Version: "sdxl-run " + version(),
	}
	if o.rng == "cpu" {
		// A1111's default noise source, "GPU", is torch's CUDA stream:
		// --rng cuda.
		p.RNG = "CPU"
	}
	if o.image != "" {
		p.DenoisingStrength = o.strengthValue()
		if o.mask != "" && !o.set["strength"] {
			p.DenoisingStrength = sdxl.DefaultInpaintStrength
		}
	}
	if o.vaeTiling {
		size := "default"
		if o.vaeTileSize != 0 {
			size = strconv.Itoa(o.vaeTileSize)
		}
		p.Extra = append(p.Extra, infotext.Field{Key: "VAE tile size", Value: size})
	}
	for _, m := range models {
		if m.Role == "refiner" && len(models) > 1 {
			// A1111's refiner short_title, "name [shorthash]".
			p.Refiner, p.RefinerSwitchAt = m.Name, o.highNoiseFrac
			if m.Hash != "" {
				p.Refiner += " [" + m.Hash + "]"
			}
			continue
		}
		p.Model, p.ModelHash = m.Name, m.Hash
	}
	for _, e := range []struct{ key, value string }{
		{"Prompt 2", o.prompt2}, {"Negative prompt 2", o.negative2.v},
		{"CFG rescale", formatNonZero(o.guidanceRescale)}, {"Denoising end", formatNonZero(o.denoisingEnd)},
	} {
		if e.value != "" {
			p.Extra = append(p.Extra, infotext.Field{Key: e.key, Value: e.value})
		}
	}
	if o.weighting != "none" {
		p.Extra = append(p.Extra, infotext.Field{Key: "Prompt weighting", Value: o.weighting})
	}
	p.Extra = append(p.Extra, o.control.parameters()...)
	p.Extra = append(p.Extra, loraHashes(res.LoRAs)...)
	return p
}

func formatNonZero(v float64) string {
	if v == 0 {
		return ""
	}
	return infotext.FormatFloat(v)
}

// chunks returns the PNG text chunks of image i.
func (m *metadata) chunks(i int) ([]imageio.TextChunk, error) {
	rec := m.rec
	rec.Image = i
	run, err := imageio.RunChunk(rec)
	if err != nil {
		return nil, err
	}
	p := m.params
	if m.batch > 1 {
		p.Extra = append([]infotext.Field{
			{Key: "Batch size", Value: strconv.Itoa(m.batch)},
			{Key: "Batch pos", Value: strconv.Itoa(i)},
		}, p.Extra...)
	}
	return []imageio.TextChunk{{Key: imageio.ParametersKey, Value: infotext.Format(p)}, run}, nil
}
