package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sdxl-go/sdxl/internal/regfile"
)

// ModelDir is a diffusers pipeline folder (what
// DiffusionPipeline.from_pretrained reads): model_index.json plus one
// sub-folder per component with its config and weights.
type ModelDir struct {
	// Root is the folder's path (for an embedded config set, a label).
	Root string
	// ModelIndex is the parsed model_index.json.
	ModelIndex *ModelIndex

	fsys   fs.FS
	onDisk bool
}

// OpenModelDir reads root/model_index.json. Component configs are read on
// demand, so a folder missing an unused component still opens.
func OpenModelDir(root string) (*ModelDir, error) {
	st, err := os.Stat(root)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a folder (a single-file checkpoint needs the single-file loader)", root)
	}
	return openFS(os.DirFS(root), root, true)
}

func openFS(fsys fs.FS, label string, onDisk bool) (*ModelDir, error) {
	d := &ModelDir{Root: label, fsys: fsys, onDisk: onDisk}
	data, err := d.readFile("model_index.json")
	p := filepath.Join(label, "model_index.json")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no model_index.json (not a diffusers pipeline folder)", label)
		}
		return nil, fmt.Errorf("%s: %v", p, err)
	}
	if d.ModelIndex, err = ParseModelIndex(p, data); err != nil {
		return nil, err
	}
	return d, nil
}

// MaxConfigBytes bounds the size of a JSON file read from a model folder
// (real ones are a few kilobytes; a shard index of a large model some
// hundreds).
const MaxConfigBytes = 16 << 20

// readFile reads a file of the folder; on disk only a regular file (or a
// link to one) of at most MaxConfigBytes is read, so a named pipe or a
// device in a model folder is an error rather than a hang.
func (d *ModelDir) readFile(rel string) ([]byte, error) {
	if d.onDisk {
		return regfile.ReadFile(d.path(rel), MaxConfigBytes)
	}
	return fs.ReadFile(d.fsys, rel)
}

// path returns the on-disk (or labelled) path of a file in the folder.
func (d *ModelDir) path(rel string) string { return filepath.Join(d.Root, filepath.FromSlash(rel)) }

// component checks that sub is a present component of the pipeline whose
// class is one of classes (any when empty) and returns its entry.
func (d *ModelDir) component(sub string, classes ...string) (Component, error) {
	if !fs.ValidPath(sub) || strings.Contains(sub, "/") || sub == "." {
		return Component{}, fmt.Errorf("%q is not a component folder name", sub)
	}
	c, ok := d.ModelIndex.Component(sub)
	idx := d.path("model_index.json")
	if !ok {
		return Component{}, fmt.Errorf("%s has no component %q (it has %s)", idx, sub, strings.Join(d.ModelIndex.ComponentNames(), ", "))
	}
	if !c.Present() {
		return Component{}, fmt.Errorf("%s sets %q to [null, null]: this pipeline has no %s", idx, sub, sub)
	}
	if len(classes) > 0 && !contains(classes, c.Class) {
		return Component{}, fmt.Errorf("%s: %q is a %s, want %s", idx, sub, c.Class, strings.Join(classes, " or "))
	}
	return c, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readConfig reads sub/file and checks its _class_name (when present)
// against class.
func (d *ModelDir) readConfig(sub, file string, classes ...string) (string, []byte, error) {
	rel := path.Join(sub, file)
	p := d.path(rel)
	data, err := d.readFile(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return p, nil, fmt.Errorf("%s: missing (model_index.json lists %q)", p, sub)
		}
		return p, nil, err
	}
	var head struct {
		ClassName *string `json:"_class_name"`
	}
	if json.Unmarshal(data, &head) == nil && head.ClassName != nil && len(classes) > 0 && !contains(classes, *head.ClassName) {
		return p, nil, fmt.Errorf("%s: _class_name is %q, want %s", p, *head.ClassName, strings.Join(classes, " or "))
	}
	return p, data, nil
}

// UNetConfig reads unet/config.json.
func (d *ModelDir) UNetConfig() (*UNetConfig, error) {
	if _, err := d.component("unet", "UNet2DConditionModel"); err != nil {
		return nil, err
	}
	p, data, err := d.readConfig("unet", "config.json", "UNet2DConditionModel")
	if err != nil {
		return nil, err
	}
	return ParseUNetConfig(p, data)
}

// VAEConfig reads vae/config.json.
func (d *ModelDir) VAEConfig() (*VAEConfig, error) {
	if _, err := d.component("vae", "AutoencoderKL"); err != nil {
		return nil, err
	}
	p, data, err := d.readConfig("vae", "config.json", "AutoencoderKL")
	if err != nil {
		return nil, err
	}
	return ParseVAEConfig(p, data)
}

// TextEncoderConfig reads sub/config.json for a CLIP text encoder
// component ("text_encoder" or "text_encoder_2" in SDXL) and checks that
// its architectures agree with model_index.json's class.
func (d *ModelDir) TextEncoderConfig(sub string) (*TextEncoderConfig, error) {
	comp, err := d.component(sub, "CLIPTextModel", "CLIPTextModelWithProjection")
	if err != nil {
		return nil, err
	}
	p, data, err := d.readConfig(sub, "config.json")
	if err != nil {
		return nil, err
	}
	c, err := ParseTextEncoderConfig(p, data)
	if err != nil {
		return nil, err
	}
	if len(c.Architectures) > 0 && !contains(c.Architectures, comp.Class) {
		return nil, fmt.Errorf("%s: architectures %v, but model_index.json loads it as %s", p, c.Architectures, comp.Class)
	}
	// The class in model_index.json decides what transformers builds.
	if comp.Class == "CLIPTextModelWithProjection" && !c.WithProjection() {
		c.Architectures = append(c.Architectures, comp.Class)
	}
	return c, nil
}

// SchedulerConfigPath returns the path of scheduler/scheduler_config.json
// (parsed by package sched) after checking it exists.
func (d *ModelDir) SchedulerConfigPath() (string, error) {
	if _, err := d.component("scheduler"); err != nil {
		return "", err
	}
	rel := "scheduler/scheduler_config.json"
	if _, err := fs.Stat(d.fsys, rel); err != nil {
		return "", fmt.Errorf("%s: missing: %v", d.path(rel), err)
	}
	if d.onDisk {
		if err := regfile.Check(d.path(rel)); err != nil {
			return "", err
		}
	}
	return d.path(rel), nil
}

// SchedulerConfigJSON returns the bytes of scheduler/scheduler_config.json
// and the scheduler class named in model_index.json (works for embedded
// config sets too).
func (d *ModelDir) SchedulerConfigJSON() (data []byte, class string, err error) {
	c, err := d.component("scheduler")
	if err != nil {
		return nil, "", err
	}
	_, data, err = d.readConfig("scheduler", "scheduler_config.json")
	return data, c.Class, err
}

// weightStem is the weight file stem of a component's library: diffusers
// models save diffusion_pytorch_model.*, transformers models model.*.
func weightStem(c Component) (string, error) {
	switch c.Library {
	case "diffusers":
		return "diffusion_pytorch_model", nil
	case "transformers":
		return "model", nil
	}
	return "", fmt.Errorf("component %q comes from library %q, which has no known weight file name", c.Name, c.Library)
}

// WeightFiles returns the safetensors files holding component sub's weights
// for variant ("" for the default files, e.g. "fp16"), choosing like
// ModelMixin/PreTrainedModel.from_pretrained(subfolder=sub, variant=...):
//
//   - a shard index <stem>.safetensors.index[.<variant>].json (or diffusers'
//     legacy <stem>.safetensors.<variant>.index.json) wins: its weight_map's
//     shard files, sorted, each of which must exist;
//   - else the single <stem>[.<variant>].safetensors.
//
// A variant whose files are absent is an error (as for a single component
// in diffusers); use PipelineVariants for the per-component fallback that
// DiffusionPipeline.from_pretrained applies.
func (d *ModelDir) WeightFiles(sub, variant string) ([]string, error) {
	c, err := d.component(sub)
	if err != nil {
		return nil, err
	}
	if !d.onDisk {
		return nil, fmt.Errorf("%s is a set of configs without weights", d.Root)
	}
	stem, err := weightStem(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", d.path("model_index.json"), err)
	}
	return WeightFilesIn(d.path(sub), stem, variant)
}

// variantName inserts variant before the last dot-separated part, as
// diffusers' and transformers' _add_variant do:
// model.safetensors -> model.fp16.safetensors,
// model.safetensors.index.json -> model.safetensors.index.fp16.json.
func variantName(name, variant string) string {
	if variant == "" {
		return name
	}
	i := strings.LastIndexByte(name, '.')
	return name[:i] + "." + variant + name[i:]
}

// WeightFilesIn is WeightFiles for a lone component folder dir whose weight
// files are named stem.* ("diffusion_pytorch_model" or "model").
func WeightFilesIn(dir, stem, variant string) ([]string, error) {
	files, _, err := resolveWeights(dir, stem, variant)
	return files, err
}

// resolveWeights implements WeightFilesIn; index is the shard index used
// ("" for a single file).
func resolveWeights(dir, stem, variant string) (files []string, index string, err error) {
	if strings.ContainsAny(variant, `/\`) || variant == "." || variant == ".." {
		return nil, "", fmt.Errorf("bad variant %q", variant)
	}
	single := variantName(stem+".safetensors", variant)
	indexes := []string{variantName(stem+".safetensors.index.json", variant)}
	if variant != "" {
		// Sharded variants saved by diffusers before 0.28.
		indexes = append(indexes, stem+".safetensors."+variant+".index.json")
	}
	// A path that exists in any form (a link that cannot be followed, a
	// pipe, a folder) is reported as what it is, not as missing.
	for _, idx := range indexes {
		p := filepath.Join(dir, idx)
		if err := regfile.Check(p); err == nil {
			files, err := shardFiles(p)
			return files, p, err
		} else if !errors.Is(err, fs.ErrNotExist) || isLink(p) {
			return nil, "", err
		}
	}
	p := filepath.Join(dir, single)
	if err := regfile.Check(p); err == nil {
		return []string{p}, "", nil
	} else if !errors.Is(err, fs.ErrNotExist) || isLink(p) {
		return nil, "", fmt.Errorf("weight file %v", err)
	}
	return nil, "", missingWeights(dir, single, indexes, variant)
}

// isLink reports whether p is a symbolic link (followed or not).
func isLink(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.Mode()&fs.ModeSymlink != 0
}

// missingWeights explains what was looked for and what is there.
func missingWeights(dir, single string, indexes []string, variant string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("no weights: %v", err)
	}
	var have []string
	for _, e := range ents {
		if n := e.Name(); strings.Contains(n, ".safetensors") || strings.HasSuffix(n, ".bin") || strings.HasSuffix(n, ".ckpt") {
			have = append(have, n)
		}
	}
	what := "the default weights"
	if variant != "" {
		what = fmt.Sprintf("variant %q", variant)
	}
	msg := fmt.Sprintf("%s: no %s for %s (nor a shard index %s)", dir, single, what, strings.Join(indexes, " / "))
	if len(have) == 0 {
		return errors.New(msg + "; the folder has no weight files")
	}
	hint := ""
	for _, h := range have {
		if strings.HasSuffix(h, ".bin") || strings.HasSuffix(h, ".ckpt") {
			hint = "; pickle (.bin/.ckpt) weights are not read: convert them to safetensors"
		}
	}
	return fmt.Errorf("%s; it has %s%s", msg, strings.Join(have, ", "), hint)
}

// shardIndex is a *.safetensors.index.json file.
type shardIndex struct {
	WeightMap map[string]string `json:"weight_map"`
}

func readShardIndex(p string) (*shardIndex, error) {
	data, err := regfile.ReadFile(p, MaxConfigBytes)
	if err != nil {
		return nil, err
	}
	var idx shardIndex
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: not a valid shard index: %v", p, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: weight_map is missing or empty", p)
	}
	for name, shard := range idx.WeightMap {
		// Shards live beside the index: refuse paths that leave the folder.
		if shard == "" || shard != filepath.Base(shard) || strings.ContainsAny(shard, `/\`) || shard == ".." || shard == "." {
			return nil, fmt.Errorf("%s: weight %q maps to %q, not a file name in the index's folder", p, name, shard)
		}
	}
	return &idx, nil
}

// shardFiles resolves an index to its sorted, existing shard paths.
func shardFiles(indexPath string) ([]string, error) {
	idx, err := readShardIndex(indexPath)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, s := range idx.WeightMap {
		set[s] = true
	}
	dir := filepath.Dir(indexPath)
	var out []string
	for s := range set {
		out = append(out, filepath.Join(dir, s))
	}
	sort.Strings(out)
	for _, p := range out {
		if err := regfile.Check(p); errors.Is(err, fs.ErrNotExist) && !isLink(p) {
			return nil, fmt.Errorf("%s lists shard %s, which is missing", indexPath, filepath.Base(p))
		} else if err != nil {
			return nil, fmt.Errorf("%s lists shard %s: %v", indexPath, filepath.Base(p), err)
		}
	}
	return out, nil
}

// ComponentHasVariant reports whether component folder sub holds files of
// variant, by diffusers' test in _identify_model_variants: some file whose
// second dot-separated name part starts with the variant
// (diffusion_pytorch_model.fp16.safetensors).
func (d *ModelDir) ComponentHasVariant(sub, variant string) bool {
	if variant == "" {
		return false
	}
	ents, err := fs.ReadDir(d.fsys, sub)
	if err != nil {
		return false
	}
	for _, e := range ents {
		parts := strings.Split(e.Name(), ".")
		if len(parts) > 1 && strings.HasPrefix(parts[1], variant) {
			return true
		}
	}
	return false
}

// PipelineVariants maps every present component with a folder to the
// variant DiffusionPipeline.from_pretrained(variant=...) loads it with:
// variant where the folder has such files, else "" (the default files,
// e.g. SDXL's VAE, often published without an fp16 file). It is an error
// when variant is set and no component has it, as in diffusers.
func (d *ModelDir) PipelineVariants(variant string) (map[string]string, error) {
	out := map[string]string{}
	found := false
	for _, name := range d.ModelIndex.ComponentNames() {
		if st, err := fs.Stat(d.fsys, name); err != nil || !st.IsDir() {
			continue
		}
		if d.ComponentHasVariant(name, variant) {
			out[name] = variant
			found = true
		} else {
			out[name] = ""
		}
	}
	if variant != "" && !found {
		return nil, fmt.Errorf("%s: no component has files of variant %q (diffusers refuses this too)", d.Root, variant)
	}
	return out, nil
}

// OpenWeights opens component sub's weight files for variant (see
// WeightFiles) as one WeightSet; for a sharded component every entry of the
// index's weight_map must be in the shard it names.
func (d *ModelDir) OpenWeights(sub, variant string) (*WeightSet, error) {
	c, err := d.component(sub)
	if err != nil {
		return nil, err
	}
	if !d.onDisk {
		return nil, fmt.Errorf("%s is a set of configs without weights", d.Root)
	}
	stem, err := weightStem(c)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", d.path("model_index.json"), err)
	}
	return OpenWeightsIn(d.path(sub), stem, variant)
}

// OpenWeightsIn is OpenWeights for a lone component folder (see
// WeightFilesIn).
func OpenWeightsIn(dir, stem, variant string) (*WeightSet, error) {
	files, index, err := resolveWeights(dir, stem, variant)
	if err != nil {
		return nil, err
	}
	ws, err := OpenWeightFiles(files...)
	if err != nil {
		return nil, err
	}
	if index != "" {
		if err := ws.checkIndex(index); err != nil {
			ws.Close()
			return nil, err
		}
	}
	return ws, nil
}
