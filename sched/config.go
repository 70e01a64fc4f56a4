package sched

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/sdxl-go/sdxl/internal/jsonobj"
)

// Config is a scheduler configuration as diffusers writes it to
// scheduler_config.json: option names mapped to JSON values (json.Number
// or any Go number, bool, string, nil, []any). Keys a scheduler does not know are ignored
// when it is built, as diffusers' from_config ignores them, and keys that
// are absent take the defaults of the scheduler class being built, not
// those of the class that wrote the file.
type Config map[string]any

// LoadConfig reads a scheduler_config.json.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scheduler config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("scheduler config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses the JSON text of a scheduler configuration. Like
// Python's json module (which diffusers uses to write these files) it
// accepts the bare literals NaN, Infinity and -Infinity, which appear for
// instance as "lambda_min_clipped": -Infinity; they become float64 values.
// Other numbers are json.Number values.
func ParseConfig(data []byte) (Config, error) {
	raw, err := jsonobj.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("parse scheduler config: %w", err)
	}
	return Config(raw), nil
}

// Clone returns a copy of c that can be modified independently (list
// values are shared; they are never modified in place).
func (c Config) Clone() Config {
	if c == nil {
		return Config{}
	}
	return maps.Clone(c)
}

// With returns a copy of c with key set to value, the way diffusers'
// from_config(config, key=value) overrides a loaded configuration.
func (c Config) With(key string, value any) Config {
	out := c.Clone()
	out[key] = value
	return out
}

// ClassName is the "_class_name" entry, or "" if absent.
func (c Config) ClassName() string {
	s, _ := c["_class_name"].(string)
	return s
}

// effective drops the keys listed in "_use_default_values" (diffusers
// records there which values were defaults when the file was saved, and
// from_config lets the new class use its own defaults for them) and the
// private "_..." keys.
func (c Config) effective() Config {
	out := Config{}
	var dropped []string
	if list, ok := c["_use_default_values"].([]any); ok {
		for _, v := range list {
			if s, ok := v.(string); ok {
				dropped = append(dropped, s)
			}
		}
	}
	for k, v := range c {
		if strings.HasPrefix(k, "_") || slices.Contains(dropped, k) {
			continue
		}
		out[k] = v
	}
	return out
}

// newReader reads c's options for class: a null value takes the class
// default, as an absent key does.
func newReader(c Config, class string) *jsonobj.Object {
	o := jsonobj.New(class, c)
	o.NullIsAbsent = true
	return o
}
