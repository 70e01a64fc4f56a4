package server

import (
	"bytes"
	"encoding/json"
	"image"
	_ "image/jpeg" // input formats png-info recognises
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/sdxl-go/sdxl/jobspec"
	"github.com/sdxl-go/sdxl/sdxl/imageio"
	"github.com/sdxl-go/sdxl/sdxl/infotext"
)

// pngInfo is /sdapi/v1/png-info: {"image": base64} → the "parameters"
// text (info), the other text chunks (items) and the parsed parameters
// (infotext.Dict, A1111's parse_generation_parameters). A JPEG has no
// text chunks here: its answer is empty; data that is no image is a 422.
func (s *Server) pngInfo(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		Image json.RawMessage `json:"image"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeDetail(w, http.StatusUnprocessableEntity, "body: want {\"image\": \"<base64 PNG>\"}")
		return
	}
	var b64 string
	if err := json.Unmarshal(req.Image, &b64); err != nil {
		writeDetail(w, http.StatusUnprocessableEntity, "image: want a base64 string")
		return
	}
	data, err := jobspec.DecodeBase64("image", b64)
	if err != nil {
		writeError(w, err)
		return
	}
	info, items, err := readInfo(data)
	if err != nil {
		writeDetail(w, http.StatusUnprocessableEntity, "image: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"info": info, "items": items, "parameters": infotext.Dict(info)})
}

// readInfo returns a PNG's parameters text and its other text chunks.
func readInfo(data []byte) (string, map[string]string, error) {
	items := map[string]string{}
	if _, _, err := image.DecodeConfig(bytes.NewReader(data)); err != nil {
		return "", nil, errNotImage
	}
	chunks, err := imageio.ReadTextChunks(bytes.NewReader(data))
	if err != nil {
		return "", items, nil // not a PNG (a JPEG): no text chunks
	}
	info := ""
	for _, c := range chunks {
		if c.Key == imageio.ParametersKey {
			info = c.Value
			continue
		}
		items[c.Key] = c.Value
	}
	return info, items, nil
}

var errNotImage = errorString("not a PNG or JPEG image")

type errorString string

func (e errorString) Error() string { return string(e) }

// maxLoRAs bounds the LoRA folder listing.
const maxLoRAs = 10000

// LoRAFile is one LoRA of the folder: Name is what prompt tags and job
// "loras" use (the path under the folder without ".safetensors", with
// "/" between folders).
type LoRAFile struct {
	Name string
	Size int64
}

// ListLoRAs lists the .safetensors files under dir: regular files only
// (symbolic links are skipped, so nothing outside dir is listed), hidden
// files and folders skipped, at most maxLoRAs, sorted by name.
func ListLoRAs(dir string) ([]LoRAFile, error) {
	var out []LoRAFile
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return err
			}
			return nil // an unreadable subfolder: skip it
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.EqualFold(filepath.Ext(p), ".safetensors") {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || !filepath.IsLocal(rel) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		out = append(out, LoRAFile{Name: filepath.ToSlash(strings.TrimSuffix(rel, filepath.Ext(rel))), Size: info.Size()})
		if len(out) >= maxLoRAs {
			return fs.SkipAll
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// lorasA1111 is the Lora extension's /sdapi/v1/loras: name, alias, path
// (relative to the LoRA folder: the server's paths stay private),
// metadata.
func (s *Server) lorasA1111(w http.ResponseWriter, r *http.Request) {
	out := []map[string]any{}
	files, err := s.loras()
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	for _, f := range files {
		out = append(out, map[string]any{"name": f.Name, "alias": f.Name, "path": f.Name + ".safetensors", "metadata": map[string]any{}})
	}
	writeJSON(w, http.StatusOK, out)
}

// loras lists the server's LoRA folder (none without one).
func (s *Server) loras() ([]LoRAFile, error) {
	if s.cfg.LoRAs != nil {
		return s.cfg.LoRAs()
	}
	if s.cfg.LoRADir == "" {
		return nil, nil
	}
	if _, err := os.Stat(s.cfg.LoRADir); err != nil {
		return nil, err
	}
	return ListLoRAs(s.cfg.LoRADir)
}
