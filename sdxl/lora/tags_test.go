package lora_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sdxl-go/sdxl/sdxl/lora"
)

func TestParseTags(t *testing.T) {
	clean, tags := lora.ParseTags("a <lora:style_v1:0.8> cat, <lyco:sub/x> <hypernet:h:1>,\n<lora:b:te=0.5:unet=2> <notatag> <:x>")
	if want := "a  cat,  ,\n <notatag> <:x>"; clean != want {
		t.Errorf("clean prompt %q, want %q", clean, want)
	}
	var got []lora.TagLoRA
	var other []string
	for _, tg := range tags {
		if !tg.IsLoRA() {
			other = append(other, tg.Text)
			continue
		}
		l, err := tg.LoRA()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
	}
	want := []lora.TagLoRA{{"style_v1", 0.8, 0.8}, {"sub/x", 1, 1}, {"b", 2, 0.5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoRA tags %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(other, []string{"<hypernet:h:1>"}) {
		t.Errorf("other tags %q", other)
	}
	for _, c := range []struct {
		tag  string
		want lora.TagLoRA
	}{
		{"<lora:x:0.5:1.5>", lora.TagLoRA{"x", 1.5, 0.5}},
		{"<lora:x: 0.25 >", lora.TagLoRA{"x", 0.25, 0.25}},
		{"<lora:x:1:2:te=3>", lora.TagLoRA{"x", 2, 3}},
		{"<lora:x:-1>", lora.TagLoRA{"x", -1, -1}},
	} {
		_, tags := lora.ParseTags(c.tag)
		l, err := tags[0].LoRA()
		if err != nil || l != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.tag, l, err, c.want)
		}
	}
	for _, bad := range []string{"<lora:x:abc>", "<lora::1>", "<lora:x:1:1:8>", "<lora:x:dyn=4>", "<lora:x:nan>", "<lora:x:unet=>"} {
		_, tags := lora.ParseTags(bad)
		if _, err := tags[0].LoRA(); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%s: error %v, want one naming the tag", bad, err)
		}
	}
}

func TestOpenInDir(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "loras")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	g := newRnd(21)
	good := writeRaw(t, "g.safetensors", goodPair(g), nil)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "a.safetensors"), filepath.Join(dir, "sub", "b.safetensors"), filepath.Join(root, "outside.safetensors")} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "outside.safetensors"), filepath.Join(dir, "link.safetensors")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.safetensors", filepath.Join(dir, "inlink.safetensors")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "a.safetensors", "sub/b", "inlink"} {
		f, err := lora.OpenInDir(dir, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(f.Layers) != 1 {
			t.Errorf("%s: %d layers", name, len(f.Layers))
		}
	}
	for _, c := range []struct{ name, want string }{
		{"../outside", "inside"}, {filepath.Join(root, "outside"), "inside"}, {"link", "inside"},
		{"sub/../../outside", "inside"}, {"missing", "no file"}, {"", "empty"},
	} {
		_, err := lora.OpenInDir(dir, c.name)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one saying %q", c.name, err, c.want)
		}
	}
}

func TestParseSpec(t *testing.T) {
	for _, c := range []struct {
		in    string
		path  string
		scale float64
	}{
		{"x.safetensors", "x.safetensors", 1},
		{"x.safetensors:0.6", "x.safetensors", 0.6},
		{"x.safetensors:-1.5", "x.safetensors", -1.5},
		{`C:\loras\x.safetensors`, `C:\loras\x.safetensors`, 1},
		{`C:\loras\x.safetensors:2`, `C:\loras\x.safetensors`, 2},
		{"a:b.safetensors:0.5", "a:b.safetensors", 0.5},
		{"dir:1/x.safetensors", "dir:1/x.safetensors", 1},
		{"x:", "x:", 1},
	} {
		p, s, err := lora.ParseSpec(c.in)
		if err != nil || p != c.path || s != c.scale {
			t.Errorf("%q: %q %v %v, want %q %v", c.in, p, s, err, c.path, c.scale)
		}
	}
	for _, bad := range []string{"", ":0.5", "x:inf", "x:NaN"} {
		if _, _, err := lora.ParseSpec(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
