package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestDeployConfigs: every serve config shipped in deploy/'s Kubernetes
// ConfigMaps is one this serve accepts, and makes pools (with the keys
// its Deployments may leave unset).
func TestDeployConfigs(t *testing.T) {
	files, err := filepath.Glob("../../deploy/kubernetes/*/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	found := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(b, []byte("\n---")) {
			var obj struct {
				Kind string            `json:"kind"`
				Data map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			cfg, ok := obj.Data["config.json"]
			if obj.Kind != "ConfigMap" || !ok {
				continue
			}
			found++
			p := filepath.Join(t.TempDir(), "config.json")
			os.WriteFile(p, []byte(cfg), 0o644)
			c, err := readServeConfig(p)
			if err != nil {
				t.Errorf("%s: %v", f, err)
				continue
			}
			for _, m := range c.Models {
				if len(m.Upstreams) == 0 {
					continue
				}
				if _, warnings, err := m.poolConfig(func(string) string { return "" }); err != nil {
					t.Errorf("%s: %v", f, err)
				} else if len(warnings) > 0 && !strings.Contains(warnings[0], "no API key is sent") {
					t.Errorf("%s: %v", f, warnings)
				}
			}
		}
	}
	if found < 2 {
		t.Errorf("%d gateway configs found in deploy/, want one per variant", found)
	}
}
