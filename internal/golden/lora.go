package golden

import (
	"encoding/json"
	"os"
	"testing"
)

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
	b, err := os.ReadFile(Path(t, "lora/index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Scenarios map[string]LoRAScenario `json:"scenarios"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Scenarios) == 0 {
		t.Fatal("lora/index.json lists no scenarios")
	}
	return idx.Scenarios
}
