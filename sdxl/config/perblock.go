package config

import (
	"fmt"

	"github.com/sdxl-go/sdxl/internal/jsonobj"
)

// size2 reads sample_size: null, an int or [h, w].
func size2(o *jsonobj.Object, key string) *Size2 {
	v, present, null := o.Get(key)
	if !present || null {
		return nil
	}
	if i, ok := jsonobj.AsInt(v); ok {
		return &Size2{i, i}
	}
	if l, ok := jsonobj.AsList(v); ok && len(l) == 2 {
		h, okh := jsonobj.AsInt(l[0])
		w, okw := jsonobj.AsInt(l[1])
		if okh && okw {
			return &Size2{h, w}
		}
	}
	o.Fail(key, "must be an integer, [height, width] or null, got %s", jsonobj.Describe(v))
	return nil
}

// perBlock reads an int-or-list key and normalises it to n values: an int
// is repeated, a list must have exactly n entries.
func perBlock(o *jsonobj.Object, key string, def, n int) []int {
	v, present, null := o.Get(key)
	switch {
	case !present:
		return repeat(def, n)
	case null:
		o.Fail(key, "must be an integer or a list of %d integers, not null", n)
		return repeat(def, n)
	}
	if i, ok := jsonobj.AsInt(v); ok {
		return repeat(i, n)
	}
	items, ok := jsonobj.AsList(v)
	if !ok {
		o.Fail(key, "must be an integer or a list of %d integers, got %s", n, jsonobj.Describe(v))
		return repeat(def, n)
	}
	if len(items) != n {
		o.Fail(key, "has %d entries, want one per block (%d)", len(items), n)
		return repeat(def, n)
	}
	out := make([]int, n)
	for i, it := range items {
		x, ok := jsonobj.AsInt(it)
		if !ok {
			o.Fail(key, "entry %d must be an integer, got %s", i, jsonobj.Describe(it))
			return repeat(def, n)
		}
		out[i] = x
	}
	return out
}

// perBlockBool is perBlock for flags.
func perBlockBool(o *jsonobj.Object, key string, def bool, n int) []bool {
	v, present, null := o.Get(key)
	out := make([]bool, n)
	switch {
	case !present:
		for i := range out {
			out[i] = def
		}
		return out
	case null:
		o.Fail(key, "must be true, false or a list of %d of them, not null", n)
		return out
	}
	if b, ok := v.(bool); ok {
		for i := range out {
			out[i] = b
		}
		return out
	}
	items, ok := jsonobj.AsList(v)
	if !ok {
		o.Fail(key, "must be true, false or a list of %d of them, got %s", n, jsonobj.Describe(v))
		return out
	}
	if len(items) != n {
		o.Fail(key, "has %d entries, want one per block (%d)", len(items), n)
		return out
	}
	for i, it := range items {
		b, ok := it.(bool)
		if !ok {
			o.Fail(key, "entry %d must be true or false, got %s", i, jsonobj.Describe(it))
			return out
		}
		out[i] = b
	}
	return out
}

func repeat[T any](v T, n int) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// transformerLayers normalises transformer_layers_per_block and
// reverse_transformer_layers_per_block to per-block, per-resnet depths,
// following the constructor and the blocks: an int applies to every block
// and resnet; a list has one entry per block, each an int (every resnet of
// the block) or a list with one depth per resnet. A list of lists needs
// reverse_transformer_layers_per_block (diffusers raises otherwise). The
// mid block takes the last block's entry (its first value if a list).
// LayersPerBlock must be checked before (it sizes the lists).
func (c *UNetConfig) transformerLayers(o *jsonobj.Object) error {
	n := len(c.DownBlockTypes)
	const key = "transformer_layers_per_block"
	file := o.Name()
	perBlock, nested, err := c.downTransformerLayers(o)
	if err != nil {
		return err
	}

	const rkey = "reverse_transformer_layers_per_block"
	upEntries, hasRev, err := transformerEntries(o, rkey, n, true)
	if err != nil {
		return err
	}
	if nested && !hasRev {
		return fmt.Errorf("%s: %s is a list of lists (an asymmetric UNet), so %s is required (as diffusers requires)", file, key, rkey)
	}
	name := rkey
	if !hasRev {
		name = key + " reversed"
		for i := range n {
			upEntries[i] = perBlock[n-1-i]
		}
	}
	c.UpTransformerLayers = make([][]int, n)
	for i := range n {
		if c.UpTransformerLayers[i], err = perLayer(file, fmt.Sprintf("%s[%d]", name, i), upEntries[i], c.LayersPerBlock[n-1-i]+1); err != nil {
			return err
		}
	}
	return nil
}

// downTransformerLayers reads transformer_layers_per_block into
// TransformerLayers and MidTransformerLayers (all a ControlNet has); it
// returns each block's entry and whether any is a list of per-resnet
// depths.
func (c *UNetConfig) downTransformerLayers(o *jsonobj.Object) (perBlock []any, nested bool, err error) {
	n := len(c.DownBlockTypes)
	const key = "transformer_layers_per_block"
	file := o.Name()
	perBlock, nested, err = transformerEntries(o, key, n, false)
	if err != nil {
		return nil, false, err
	}
	c.TransformerLayers = make([][]int, n)
	for i := range n {
		if c.TransformerLayers[i], err = perLayer(file, fmt.Sprintf("%s[%d]", key, i), perBlock[i], c.LayersPerBlock[i]); err != nil {
			return nil, false, err
		}
	}
	if c.MidTransformerLayers, err = perLayerPrefix(file, fmt.Sprintf("%s[%d] (mid block)", key, n-1), perBlock[n-1]); err != nil {
		return nil, false, err
	}
	return perBlock, nested, nil
}

// transformerEntries reads the n per-block entries of key. For the
// forward key (reverse false) an absent key is 1 for every block, an int
// applies to every block, and flag reports a nested list. For the reverse
// key (reverse true) absent or null gives nil entries and flag false, and
// only a list is accepted; flag reports that it was given.
func transformerEntries(o *jsonobj.Object, key string, n int, reverse bool) (entries []any, flag bool, err error) {
	file := o.Name()
	v, present, null := o.Get(key)
	entries = make([]any, n)
	switch {
	case reverse && (!present || null):
		return entries, false, nil
	case null:
		return nil, false, fmt.Errorf("%s: %s must be an integer or a list, not null", file, key)
	case !present:
		v = 1
	}
	items, isList := jsonobj.AsList(v)
	switch {
	case reverse && !isList:
		return nil, false, fmt.Errorf("%s: %s must be a list with one entry per up block, got %s", file, key, jsonobj.Describe(v))
	case !isList:
		for i := range entries {
			entries[i] = v
		}
		return entries, false, nil
	case len(items) != n:
		return nil, false, fmt.Errorf("%s: %s has %d entries, want one per block (%d)", file, key, len(items), n)
	}
	copy(entries, items)
	if reverse {
		return entries, true, nil
	}
	for _, it := range items {
		flag = flag || jsonobj.IsList(it)
	}
	return entries, flag, nil
}

// perLayer expands one block's entry: an int for every one of count
// resnets, or a list with exactly count depths.
func perLayer(file, key string, v any, count int) ([]int, error) {
	ds, isList := jsonobj.AsList(v)
	if !isList {
		d, ok := jsonobj.AsInt(v)
		if !ok {
			return nil, fmt.Errorf("%s: %s must be an integer or a list of integers, got %s", file, key, jsonobj.Describe(v))
		}
		return repeat(d, count), nil
	}
	if len(ds) != count {
		return nil, fmt.Errorf("%s: %s has %d depths, want one per resnet of the block (%d)", file, key, len(ds), count)
	}
	out := make([]int, count)
	for j, it := range ds {
		d, ok := jsonobj.AsInt(it)
		if !ok {
			return nil, fmt.Errorf("%s: %s entry %d must be an integer, got %s", file, key, j, jsonobj.Describe(it))
		}
		out[j] = d
	}
	return out, nil
}

// perLayerPrefix returns an entry's int, or its first depth if a list.
func perLayerPrefix(file, key string, v any) (int, error) {
	if ds, isList := jsonobj.AsList(v); isList {
		if len(ds) == 0 {
			return 0, fmt.Errorf("%s: %s must be a non-empty list of integers, got %s", file, key, jsonobj.Describe(v))
		}
		key += " entry 0"
		v = ds[0]
	}
	d, ok := jsonobj.AsInt(v)
	if !ok {
		return 0, fmt.Errorf("%s: %s must be an integer, got %s", file, key, jsonobj.Describe(v))
	}
	return d, nil
}
