package golden

import "testing"

// LoRAScenario is one entry of golden/lora/index.json "scenarios": a small
// base text-to-image run with LoRAs applied to the UNet and both text
// encoders at the given scales.
type LoRAScenario struct {
	Scenario
	Loras []struct {
		File  string  `json:"file"` // relative to golden/lora
		Scale float64 `json:"scale"`
	} `json:"loras"`
	File string `json:"file"` // the e2e_*.safetensors of the run
}

// LoRAScenarios reads golden/lora/index.json (skipping if absent).
func LoRAScenarios(t testing.TB) map[string]LoRAScenario {
	t.Helper()
	return scenarios[LoRAScenario](t, "lora/index.json")
}
