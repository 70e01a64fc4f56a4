package main

import (
	"flag"
	"runtime"
	"strconv"
	"time"

	"github.com/sdxl-go/sdxl/sdxl"
	"github.com/sdxl-go/sdxl/sdxl/bundled"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
	"github.com/sdxl-go/sdxl/sdxl/pngmeta"
)

type runRecord struct {
	Tool      string             `json:"tool"`
	Version   string             `json:"version"`
	Go        string             `json:"go"`
	Date      string             `json:"date"`
	Device    string             `json:"device"`
	DType     string             `json:"dtype"`
	Flags     map[string]string  `json:"flags"`
	Seed      uint64             `json:"seed"`
	Scheduler string             `json:"scheduler_class"`
	Timesteps []float64          `json:"timesteps"`
	Models    []pngmeta.ModelRef `json:"models"`
	// ControlNets are the --controlnet groups in order (a flag given
	// several times does not fit Flags).
	ControlNets []controlRecord `json:"controlnets,omitempty"`
	// LoRAs are the LoRAs applied, --lora files and prompt tags, in order.
	LoRAs   []pngmeta.LoRARecord `json:"loras,omitempty"`
	Files   []pngmeta.FileHash   `json:"model_files"`
	Seconds float64              `json:"seconds"`
	Image   int                  `json:"image_index,omitempty"`
}

type metadata struct {
	params infotext.Params
	rec    runRecord
	// batch is --num-images (see pngmeta.Chunks).
	batch int
}

func runMetadata(o *options, fs *flag.FlagSet, set map[string]bool, req sdxl.Request, res *sdxl.Result, h pngmeta.Hashes, elapsed time.Duration, dev *device) *metadata {
	flags := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "lora" {
			return // repeated: the run record's loras list them
		}
		if set[f.Name] || f.Name == "steps" || f.Name == "guidance" || f.Name == "scheduler" || f.Name == "rng" {
			flags[f.Name] = f.Value.String()
		}
	})
	flags["seed"] = strconv.FormatUint(req.Seed, 10)
	if o.model == "" && len(h.Models) > 0 && h.Models[0].Role == "base" {
		h.Models[0].Name = bundled.Name
	}
	params := pngmeta.Params(req, res, h.Models, pngmeta.Options{Version: "sdxl-run " + version(), Extra: o.control.parameters()})
	return &metadata{batch: o.numImages, params: params, rec: runRecord{
		Tool: "sdxl-run", Version: version(), Go: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339),
		Device: dev.name, DType: dev.dtype.String(), Flags: flags, Seed: req.Seed, Scheduler: res.Scheduler,
		Timesteps: res.Timesteps, Models: h.Models, Files: h.Files, Seconds: elapsed.Seconds(),
		ControlNets: o.control.records(), LoRAs: pngmeta.LoRARecords(res.LoRAs),
	}}
}

// chunks returns the PNG text chunks of image i.
func (m *metadata) chunks(i int) ([]imageio.TextChunk, error) {
	rec := m.rec
	rec.Image = i
	return pngmeta.Chunks(m.params, rec, m.batch, i)
}
