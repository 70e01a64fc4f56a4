package infotext

import (
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/sched"
)

// TestSamplerRoundTrip: every scheduler name we accept (with and without
// Karras where it has the option) gets an A1111 name that maps back to an
// equivalent choice.
func TestSamplerRoundTrip(t *testing.T) {
	for _, name := range sched.Names() {
		for _, karras := range []bool{false, true} {
			if _, err := sched.New(name, sched.Config{}, karrasOpt(karras)...); err != nil {
				continue // no Karras option (Euler a, DDIM, ...)
			}
			s, sch, err := Sampler(name, karras)
			if err != nil {
				t.Errorf("Sampler(%q, %v): %v", name, karras, err)
				continue
			}
			c, err := Scheduler(s, sch)
			if err != nil || c.Note != "" {
				t.Errorf("Scheduler(%q, %q) = %+v, %v", s, sch, c, err)
				continue
			}
			want, _ := presetName(name)
			if base, ok := karrasPresets[want]; ok {
				want, karras = base, true
			}
			got, gotKarras := c.Scheduler, c.Karras
			if base, ok := karrasPresets[got]; ok {
				got, gotKarras = base, true
			}
			if got != want || gotKarras != karras {
				t.Errorf("%s karras=%v -> %q/%q -> %+v", name, karras, s, sch, c)
			}
		}
	}
}

func karrasOpt(k bool) []sched.Option {
	if k {
		return []sched.Option{sched.Karras()}
	}
	return nil
}

func TestSamplerNames(t *testing.T) {
	for _, c := range []struct {
		scheduler      string
		karras         bool
		sampler, sched string
	}{
		{"euler", false, "Euler", "Automatic"},
		{"euler", true, "Euler", "Karras"},
		{"euler_a", false, "Euler a", "Automatic"},
		{"dpmpp_2m", false, "DPM++ 2M", "Uniform"},
		{"dpmpp_2m_karras", false, "DPM++ 2M", "Karras"},
		{"dpmpp_2m_sde_karras", false, "DPM++ 2M SDE", "Karras"},
		{"pndm", false, "PLMS", "Automatic"},
		{"kdpm2_a", true, "DPM2 a", "Karras"},
		{"EulerDiscreteScheduler", false, "Euler", "Automatic"},
		{"DPMSolverMultistepScheduler", true, "DPM++ 2M", "Karras"},
	} {
		s, sch, err := Sampler(c.scheduler, c.karras)
		if err != nil || s != c.sampler || sch != c.sched {
			t.Errorf("Sampler(%q, %v) = %q, %q, %v; want %q, %q", c.scheduler, c.karras, s, sch, err, c.sampler, c.sched)
		}
	}
	if _, _, err := Sampler("nope", false); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown scheduler: %v", err)
	}
	if _, err := Scheduler("DPM++ SDE", "Karras"); err == nil || !strings.Contains(err.Error(), `"DPM++ SDE"`) {
		t.Errorf("unknown sampler: %v", err)
	}
	for _, c := range []struct {
		sampler, sched string
		want           Choice
	}{
		{"k_euler_a", "", Choice{Scheduler: "euler_a"}},
		{"dpm++2m", "", Choice{Scheduler: "dpmpp_2m"}},             // sd.cpp: discrete, not A1111's Karras default
		{"DPM++ 2M", "", Choice{Scheduler: "dpmpp_2m_karras"}},     // A1111's default for DPM++ 2M
		{"DPM++ 2M", "SGM Uniform", Choice{Scheduler: "dpmpp_2m"}}, //
		{"Euler Karras", "Automatic", Choice{Scheduler: "euler", Karras: true}},
		{"LMS", "karras", Choice{Scheduler: "lms", Karras: true}},
		{"UniPC", "Align Your Steps", Choice{Scheduler: "unipc", Note: `schedule type "Align Your Steps" is not available here; using unipc's default sigmas`}},
	} {
		got, err := Scheduler(c.sampler, c.sched)
		if err != nil || got != c.want {
			t.Errorf("Scheduler(%q, %q) = %+v, %v; want %+v", c.sampler, c.sched, got, err, c.want)
		}
	}
}

func TestClipSkip(t *testing.T) {
	for _, c := range []struct{ diffusers, a1111 int }{{0, 1}, {1, 3}, {2, 4}} {
		if got := ClipSkipFor(c.diffusers); got != c.a1111 {
			t.Errorf("ClipSkipFor(%d) = %d, want %d", c.diffusers, got, c.a1111)
		}
		if got := DiffusersClipSkip(c.a1111); got != c.diffusers {
			t.Errorf("DiffusersClipSkip(%d) = %d, want %d", c.a1111, got, c.diffusers)
		}
	}
	if DiffusersClipSkip(2) != 0 {
		t.Error("A1111's Clip skip 2 is SDXL's default penultimate layer")
	}
}
