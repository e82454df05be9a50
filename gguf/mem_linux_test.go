package gguf

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCgroupAvailable: the room left under a memory cgroup's limit, for v1
// and v2 layouts, the namespaced case (the process's cgroup is the mount's
// root), and no limit.
func TestCgroupAvailable(t *testing.T) {
	write := func(t *testing.T, dir string, files map[string]string) {
		for name, body := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name   string
		files  map[string]string
		want   int64
		wantOK bool
	}{
		{"v2", map[string]string{"proc": "0::/app\n", "fs/app/memory.max": "8000\n", "fs/app/memory.current": "3000\n",
			"fs/app/memory.stat": "anon 1000\ninactive_file 500\n"}, 5500, true},
		{"v2 no limit", map[string]string{"proc": "0::/app\n", "fs/app/memory.max": "max\n", "fs/app/memory.current": "3000\n"}, 0, false},
		{"v2 namespaced", map[string]string{"proc": "0::/\n", "fs/memory.max": "4096\n", "fs/memory.current": "96\n"}, 4000, true},
		{"v1", map[string]string{"proc": "4:memory:/box\n3:cpu:/\n", "fs/memory/box/memory.limit_in_bytes": "10000\n",
			"fs/memory/box/memory.usage_in_bytes": "7000\n", "fs/memory/box/memory.stat": "cache 6000\ntotal_inactive_file 2000\n"}, 5000, true},
		{"v1 shared hierarchy, namespaced", map[string]string{"proc": "5:cpuacct,memory:/gone\n", "fs/memory/memory.limit_in_bytes": "1000\n",
			"fs/memory/memory.usage_in_bytes": "1500\n"}, 0, true},
		{"v1 unlimited", map[string]string{"proc": "4:memory:/\n", "fs/memory/memory.limit_in_bytes": "9223372036854771712\n",
			"fs/memory/memory.usage_in_bytes": "7000\n"}, 0, false},
		{"unreadable", map[string]string{"proc": "4:memory:/x\n"}, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, c.files)
			got, ok := cgroupAvailable(filepath.Join(dir, "proc"), filepath.Join(dir, "fs"))
			if got != c.want || ok != c.wantOK {
				t.Errorf("got %d, %v; want %d, %v", got, ok, c.want, c.wantOK)
			}
		})
	}
	if _, ok := memInfoAvailable("/proc/meminfo"); !ok {
		t.Error("MemAvailable not read from /proc/meminfo")
	}
}
