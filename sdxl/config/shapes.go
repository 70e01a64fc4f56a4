package config

import (
	"fmt"
	"strings"
)

// Shapes maps state-dict keys to tensor shapes.
type Shapes map[string][]int

// Params is the total element count.
func (s Shapes) Params() int64 {
	var n int64
	for _, sh := range s {
		p := int64(1)
		for _, d := range sh {
			p *= int64(d)
		}
		n += p
	}
	return n
}

func (s Shapes) add(name string, shape ...int) { s[name] = shape }

// linear adds a torch.nn.Linear's weight [out, in] and optional bias.
func (s Shapes) linear(prefix string, in, out int, bias bool) {
	s.add(prefix+".weight", out, in)
	if bias {
		s.add(prefix+".bias", out)
	}
}

func (s Shapes) conv(prefix string, in, out, k int) {
	s.add(prefix+".weight", out, in, k, k)
	s.add(prefix+".bias", out)
}

// norm adds a GroupNorm or LayerNorm's affine weight and bias.
func (s Shapes) norm(prefix string, ch int) {
	s.add(prefix+".weight", ch)
	s.add(prefix+".bias", ch)
}

// resnet adds a ResnetBlock2D (default time-embedding norm); temb 0 means
// no time embedding (the VAE's blocks).
func (s Shapes) resnet(prefix string, in, out, temb int) {
	s.norm(prefix+".norm1", in)
	s.conv(prefix+".conv1", in, out, 3)
	if temb > 0 {
		s.linear(prefix+".time_emb_proj", temb, out, true)
	}
	s.norm(prefix+".norm2", out)
	s.conv(prefix+".conv2", out, out, 3)
	if in != out {
		s.conv(prefix+".conv_shortcut", in, out, 1)
	}
}

// transformer2D adds a Transformer2DModel with depth BasicTransformerBlocks
// (self-attention, cross-attention, GEGLU feed-forward of 4x width).
func (s Shapes) transformer2D(prefix string, ch, heads, headDim, cross, depth int, linearProj bool) {
	inner := heads * headDim
	s.norm(prefix+".norm", ch)
	if linearProj {
		s.linear(prefix+".proj_in", ch, inner, true)
		s.linear(prefix+".proj_out", inner, ch, true)
	} else {
		s.conv(prefix+".proj_in", ch, inner, 1)
		s.conv(prefix+".proj_out", inner, ch, 1)
	}
	for k := range depth {
		b := fmt.Sprintf("%s.transformer_blocks.%d", prefix, k)
		for _, n := range []string{"norm1", "norm2", "norm3"} {
			s.norm(b+"."+n, inner)
		}
		for _, a := range []struct {
			name string
			kv   int
		}{{"attn1", inner}, {"attn2", cross}} {
			s.linear(b+"."+a.name+".to_q", inner, inner, false)
			s.linear(b+"."+a.name+".to_k", a.kv, inner, false)
			s.linear(b+"."+a.name+".to_v", a.kv, inner, false)
			s.linear(b+"."+a.name+".to_out.0", inner, inner, true)
		}
		s.linear(b+".ff.net.0.proj", inner, 2*4*inner, true)
		s.linear(b+".ff.net.2", 4*inner, inner, true)
	}
}

// ParamShapes lists every parameter of the UNet2DConditionModel that c
// describes, under diffusers' state-dict names, with its shape. Configs
// outside the SDXL family (NonSDXL non-empty) are refused.
func (c *UNetConfig) ParamShapes() (Shapes, error) {
	if bad := c.NonSDXL(); len(bad) > 0 {
		return nil, fmt.Errorf("parameter shapes are only derived for SDXL-family UNets; this config has %s", strings.Join(bad, ", "))
	}
	s := Shapes{}
	c0 := c.BlockOutChannels[0]
	temb := c.TimeEmbedDim()
	s.add("conv_in.weight", c0, c.InChannels, c.ConvInKernel, c.ConvInKernel)
	s.add("conv_in.bias", c0)
	s.linear("time_embedding.linear_1", c.TimestepInputDim(), temb, true)
	s.linear("time_embedding.linear_2", temb, temb, true)
	if c.AdditionEmbedType == "text_time" {
		s.linear("add_embedding.linear_1", *c.ProjectionClassEmbeddingsInputDim, temb, true)
		s.linear("add_embedding.linear_2", temb, temb, true)
	}
	for _, b := range c.DownBlocks() {
		p := fmt.Sprintf("down_blocks.%d", b.Index)
		for j := range b.NumLayers {
			s.resnet(fmt.Sprintf("%s.resnets.%d", p, j), b.ResnetIn[j], b.OutChannels, temb)
			if b.HasCrossAttention {
				s.transformer2D(fmt.Sprintf("%s.attentions.%d", p, j), b.OutChannels, b.NumHeads, b.HeadDim, b.CrossAttentionDim, b.TransformerLayers[j], c.UseLinearProjection)
			}
		}
		if b.AddDownsample {
			s.conv(p+".downsamplers.0.conv", b.OutChannels, b.OutChannels, 3)
		}
	}
	if m := c.MidBlock(); m.Type != "" {
		for j := range m.NumResnets {
			s.resnet(fmt.Sprintf("mid_block.resnets.%d", j), m.Channels, m.Channels, temb)
		}
		if m.HasCrossAttention {
			s.transformer2D("mid_block.attentions.0", m.Channels, m.NumHeads, m.HeadDim, m.CrossAttentionDim, m.TransformerLayers, c.UseLinearProjection)
		}
	}
	for _, b := range c.UpBlocks() {
		p := fmt.Sprintf("up_blocks.%d", b.Index)
		for j := range b.NumLayers {
			s.resnet(fmt.Sprintf("%s.resnets.%d", p, j), b.ResnetIn[j], b.OutChannels, temb)
			if b.HasCrossAttention {
				s.transformer2D(fmt.Sprintf("%s.attentions.%d", p, j), b.OutChannels, b.NumHeads, b.HeadDim, b.CrossAttentionDim, b.TransformerLayers[j], c.UseLinearProjection)
			}
		}
		if b.AddUpsample {
			s.conv(p+".upsamplers.0.conv", b.OutChannels, b.OutChannels, 3)
		}
	}
	s.norm("conv_norm_out", c0)
	s.add("conv_out.weight", c.OutChannels, c0, c.ConvOutKernel, c.ConvOutKernel)
	s.add("conv_out.bias", c.OutChannels)
	return s, nil
}

// vaeMid adds the VAE's UNetMidBlock2D: two resnets around an optional
// single-head self-attention with biases (its projections are linear in
// diffusers, 1x1 convs in original checkpoints).
func (s Shapes) vaeMid(prefix string, ch int, attn bool) {
	s.resnet(prefix+".resnets.0", ch, ch, 0)
	if attn {
		a := prefix + ".attentions.0"
		s.norm(a+".group_norm", ch)
		for _, n := range []string{"to_q", "to_k", "to_v", "to_out.0"} {
			s.linear(a+"."+n, ch, ch, true)
		}
	}
	s.resnet(prefix+".resnets.1", ch, ch, 0)
}

// ParamShapes lists every parameter of the AutoencoderKL that c describes,
// under diffusers' state-dict names. Only DownEncoderBlock2D /
// UpDecoderBlock2D models (every SDXL/SD VAE) are supported.
func (c *VAEConfig) ParamShapes() (Shapes, error) {
	if bad := c.NonSDXL(); len(bad) > 0 {
		return nil, fmt.Errorf("parameter shapes are only derived for SDXL-family VAEs; this config has %s", strings.Join(bad, ", "))
	}
	s := Shapes{}
	n := len(c.BlockOutChannels)
	boc := c.BlockOutChannels
	top := boc[n-1]
	// Encoder.
	s.conv("encoder.conv_in", c.InChannels, boc[0], 3)
	out := boc[0]
	for i := range n {
		in := out
		out = boc[i]
		for j := range c.LayersPerBlock {
			rin := out
			if j == 0 {
				rin = in
			}
			s.resnet(fmt.Sprintf("encoder.down_blocks.%d.resnets.%d", i, j), rin, out, 0)
		}
		if i != n-1 {
			s.conv(fmt.Sprintf("encoder.down_blocks.%d.downsamplers.0.conv", i), out, out, 3)
		}
	}
	s.vaeMid("encoder.mid_block", top, c.MidBlockAddAttention)
	s.norm("encoder.conv_norm_out", top)
	s.conv("encoder.conv_out", top, 2*c.LatentChannels, 3)
	if c.UseQuantConv {
		s.conv("quant_conv", 2*c.LatentChannels, 2*c.LatentChannels, 1)
	}
	if c.UsePostQuantConv {
		s.conv("post_quant_conv", c.LatentChannels, c.LatentChannels, 1)
	}
	// Decoder.
	s.conv("decoder.conv_in", c.LatentChannels, top, 3)
	s.vaeMid("decoder.mid_block", top, c.MidBlockAddAttention)
	out = top
	for i := range n {
		prev := out
		out = boc[n-1-i]
		for j := range c.LayersPerBlock + 1 {
			rin := out
			if j == 0 {
				rin = prev
			}
			s.resnet(fmt.Sprintf("decoder.up_blocks.%d.resnets.%d", i, j), rin, out, 0)
		}
		if i != n-1 {
			s.conv(fmt.Sprintf("decoder.up_blocks.%d.upsamplers.0.conv", i), out, out, 3)
		}
	}
	s.norm("decoder.conv_norm_out", boc[0])
	s.conv("decoder.conv_out", boc[0], c.OutChannels, 3)
	return s, nil
}

// ParamShapes lists every parameter of the CLIP text model that c
// describes under transformers' names, each prefixed by prefix:
// "text_model." for CLIPTextModelWithProjection and transformers-4
// CLIPTextModel files (the real SDXL repos), "" for transformers-5
// CLIPTextModel files. text_projection (WithProjection models) is never
// prefixed.
func (c *TextEncoderConfig) ParamShapes(prefix string) Shapes {
	s := Shapes{}
	h, m := c.HiddenSize, c.IntermediateSize
	s.add(prefix+"embeddings.token_embedding.weight", c.VocabSize, h)
	s.add(prefix+"embeddings.position_embedding.weight", c.MaxPositionEmbeddings, h)
	for l := range c.NumHiddenLayers {
		p := fmt.Sprintf("%sencoder.layers.%d", prefix, l)
		for _, n := range []string{"q_proj", "k_proj", "v_proj", "out_proj"} {
			s.linear(p+".self_attn."+n, h, h, true)
		}
		s.norm(p+".layer_norm1", h)
		s.norm(p+".layer_norm2", h)
		s.linear(p+".mlp.fc1", h, m, true)
		s.linear(p+".mlp.fc2", m, h, true)
	}
	s.norm(prefix+"final_layer_norm", h)
	if c.WithProjection() {
		s.linear("text_projection", h, c.ProjectionDim, false)
	}
	return s
}
