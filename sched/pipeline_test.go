package sched

import (
	"testing"

	"github.com/sdxl-go/sdxl/internal/golden"
)

func loadModelScheduler(t *testing.T, model string) Scheduler {
	t.Helper()
	cfg, err := LoadConfig(golden.Path(t, "tiny/models/"+model+"/scheduler/scheduler_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := FromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkSchedule compares a scheduler's full schedule with a pipeline
// golden's sched.* tensors.
func checkSchedule(t *testing.T, f *golden.File, prefix string, s Scheduler) {
	t.Helper()
	ts, _ := f.Get(prefix + "sched.timesteps")
	golden.Check(t, prefix+"sched.timesteps", f64to32(s.Timesteps()), ts, schedTol)
	sig, _ := f.Get(prefix + "sched.sigmas")
	golden.Check(t, prefix+"sched.sigmas", s.Sigmas(), sig, schedTol)
	init, _ := f.Get(prefix + "sched.init_noise_sigma")
	golden.Check(t, prefix+"sched.init_noise_sigma", []float32{float32(s.InitNoiseSigma())}, init, schedTol)
}

// TestPipelineTxt2ImgSchedule: the tiny SDXL model's scheduler config, as
// the txt2img pipelines use it.
func TestPipelineTxt2ImgSchedule(t *testing.T) {
	for _, file := range []string{"pipe_txt2img", "pipe_txt2img_rescale_nonsquare"} {
		f := golden.Open(t, "tiny/goldens/"+file+".safetensors")
		s := loadModelScheduler(t, "sdxl-tiny-base")
		if err := s.SetTimesteps(4); err != nil {
			t.Fatal(err)
		}
		checkSchedule(t, f, "", s)
		steps, _ := f.Get("steps.t")
		golden.Check(t, file+" steps.t", f64to32(s.Timesteps()), steps, 0)
	}
}

// TestPipelineImg2ImgStrength: strength 0.5 of 4 steps starts at index 2,
// and add_noise there gives the pipeline's initial latents.
func TestPipelineImg2ImgStrength(t *testing.T) {
	for _, c := range []struct{ file, model string }{
		{"pipe_img2img", "sdxl-tiny-base"},
		{"pipe_img2img_refiner", "sdxl-tiny-refiner"},
	} {
		f := golden.Open(t, "tiny/goldens/"+c.file+".safetensors")
		s := loadModelScheduler(t, c.model)
		if err := s.SetTimesteps(4); err != nil {
			t.Fatal(err)
		}
		checkSchedule(t, f, "", s)
		run, err := Img2ImgTimesteps(s, 4, 0.5, 0)
		if err != nil {
			t.Fatal(err)
		}
		steps, _ := f.Get("steps.t")
		golden.Check(t, c.file+" steps.t", f64to32(run), steps, 0)
		wantT, _ := f.Get("init.timestep")
		golden.Check(t, c.file+" init.timestep", []float32{float32(run[0])}, wantT, 0)
		x0, _ := f.Get("init.latents_scaled")
		noise, _ := f.Get("init.noise")
		want, _ := f.Get("init.noised")
		got, err := s.AddNoise(x0, noise, run[0])
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, c.file+" init.noised", got, want, schedTol)
	}
}

// TestPipelineEnsembleSplit: base with denoising_end 0.8 then the refiner
// with denoising_start 0.8, 8 steps each.
func TestPipelineEnsembleSplit(t *testing.T) {
	f := golden.Open(t, "tiny/goldens/pipe_ensemble.safetensors")
	base := loadModelScheduler(t, "sdxl-tiny-base")
	if err := base.SetTimesteps(8); err != nil {
		t.Fatal(err)
	}
	checkSchedule(t, f, "base.", base)
	baseSteps, _ := f.Get("base.steps.t")
	golden.Check(t, "base.steps.t", f64to32(DenoisingEnd(base, base.Timesteps(), 0.8)), baseSteps, 0)

	ref := loadModelScheduler(t, "sdxl-tiny-refiner")
	if err := ref.SetTimesteps(8); err != nil {
		t.Fatal(err)
	}
	checkSchedule(t, f, "refiner.", ref)
	run, err := Img2ImgTimesteps(ref, 8, 0.3, 0.8)
	if err != nil {
		t.Fatal(err)
	}
	refSteps, _ := f.Get("refiner.steps.t")
	golden.Check(t, "refiner.steps.t", f64to32(run), refSteps, 0)
	if got := ref.StepIndex(); got != -1 {
		t.Errorf("step index before the first step = %d, want -1", got)
	}
	// The begin index makes the first step land on the cut.
	x := make([]float32, 8)
	if _, err := ref.ScaleModelInput(x, run[0]); err != nil {
		t.Fatal(err)
	}
	if got, want := ref.StepIndex(), len(ref.Timesteps())-len(run); got != want {
		t.Errorf("first refiner step index %d, want %d", got, want)
	}
}
