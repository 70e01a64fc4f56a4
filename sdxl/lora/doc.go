// Package lora reads LoRA files for SDXL in every common key layout and
// merges them into a loaded model's weights, exactly as diffusers fuses them,
// several at once, switchable without reloading the model.
//
// # Formats
//
// Every tensor key is classified on its own through one table (keys.go), never
// by looking at the first key of a file as diffusers does (so files mixing
// spellings, which diffusers partly drops, load whole):
//
//   - diffusers/PEFT: unet.<module>.lora_A.weight / .lora_B.weight, with the
//     text_encoder. and text_encoder_2. prefixes; alpha from the safetensors
//     header (__metadata__["lora_adapter_metadata"], PEFT's LoraConfig per
//     component: lora_alpha, r, alpha_pattern, rank_pattern, use_rslora),
//     else alpha = rank;
//   - the older diffusers spellings .lora.down/.up, .lora_linear_layer.down/.up
//     and attention processors (attn1.processor.to_q_lora.down.weight);
//   - kohya sd-scripts: lora_unet_*, lora_te1_*, lora_te2_* with
//     .lora_down.weight, .lora_up.weight and a 0-d .alpha, over diffusers module
//     paths or over the original (SGM) UNet paths that SDXL LoRAs trained with
//     sd-scripts carry (input_blocks_4_1_..., in_layers_2, emb_layers_1, ...);
//     linear and conv LoRA (LoCon: k×k down, 1×1 up, optional lora_mid);
//   - LyCORIS LoHa (hada_w1_a/b, hada_w2_a/b, optional hada_t1/t2) and LoKr
//     (lokr_w1 or lokr_w1_a/b, lokr_w2 or lokr_w2_a/b, optional lokr_t2).
//
// dora_scale tensors are ignored with a warning (File.Warnings), as diffusers
// does for SDXL. Anything else is an error naming the key and the file.
//
// # Names
//
// Layers resolve to our parameter names (nn.Params of sdxl/unet's UNet and
// sdxl/clip's text models): diffusers module paths directly, kohya's flattened
// names through a table built from the model itself, with the SGM names taken
// from sdxl/singlefile's UNet layout (so the refiner's four-level UNet maps
// too). A key that maps to no parameter, or whose shape does not fit it, is an
// error naming the key and the file; files that look like SD 1.5 LoRAs are
// reported as such.
//
// # Merging
//
// W' = W + scale·(alpha/rank)·up·down. Plain LoRA products run on the model's
// backend (one MatMul per weight for all LoRAs touching it, then Add), so on
// CUDA the merge happens on the device; LoHa, LoKr and Tucker (lora_mid,
// hada_t*, lokr_t2) deltas are computed on the host in float64 and uploaded.
// The result is stored in the weight's dtype. An Applier keeps the original
// tensors of the weights it touched and puts them back bit for bit, so
// switching LoRA sets (A → B → none) equals fresh loads exactly.
//
// # Prompts and flags
//
// ParseTags extracts AUTOMATIC1111's <lora:NAME:W> prompt tags; OpenInDir
// resolves NAME to DIR/NAME.safetensors without escaping DIR; ParseSpec reads
// the CLI's PATH[:SCALE].
package lora
