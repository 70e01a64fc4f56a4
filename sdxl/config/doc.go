// Package config reads diffusers model folders the way
// DiffusionPipeline.from_pretrained does: model_index.json, the component
// configs (unet/config.json for UNet2DConditionModel, vae/config.json for
// AutoencoderKL, text_encoder*/config.json for transformers' CLIP text
// models) and the choice of weight files (plain, variant such as fp16, or
// sharded through a *.safetensors.index.json).
//
// Configs are typed structs with the Python constructors' defaults for
// absent keys, a JSON null read as Python's None, and every int-or-list
// field normalised to one value per block; errors name the file and the
// key. Every value is validated (Validate) before a config is returned,
// against what the constructors accept and this package's limits
// (MaxBlocks, MaxWidth, ...), so a model built from a config never meets a
// negative size or an absurd count. Unknown keys are kept in Unused rather
// than refused, since diffusers ignores them too. The scheduler config belongs to package sched; this
// package only locates it (ModelDir.SchedulerConfigPath).
//
// The released SDXL 1.0 base and refiner configs are embedded (RealModelDir,
// SDXLBaseUNet, ...) for single-file checkpoints and benchmarks. The models
// built from them (packages unet, vae, clip) are checked key by key against
// the full-size key lists there.
//
//	d, err := config.OpenModelDir("models/sdxl-base")
//	unet, err := d.UNetConfig()
//	variants, err := d.PipelineVariants("fp16") // per component, with fallback
//	ws, err := d.OpenWeights("unet", variants["unet"])
//	defer ws.Close()
//	w, shape, err := ws.Float32("conv_in.weight")
package config
