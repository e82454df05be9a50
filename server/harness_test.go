package server_test

import (
	"testing"

	"github.com/stepflash/stepflash/chat"
	"github.com/stepflash/stepflash/internal/testserve"
	"github.com/stepflash/stepflash/local"
	"github.com/stepflash/stepflash/server"
)

// The harness is internal/testserve's; these are its short names here.
type (
	served    = testserve.Served
	realModel = testserve.Real
)

func loadModel(t *testing.T, name string) *testserve.Loaded { return testserve.Load(t, name) }
func loadPath(t *testing.T, path string) *testserve.Loaded  { return testserve.LoadPath(t, path) }

func startServer(t *testing.T, cfg server.Config, models []realModel, extra ...*server.Model) *served {
	return testserve.Start(t, cfg, models, extra...)
}

func scriptedModel(t *testing.T, name string, sc *testserve.Scripted) *server.Model {
	return testserve.ScriptedModel(t, name, sc, nil)
}

func scriptedModelWith(t *testing.T, name string, sc *testserve.Scripted, tmpl *chat.Template) *server.Model {
	return testserve.ScriptedModel(t, name, sc, tmpl)
}

func localModel(t *testing.T, name string, aliases []string, m local.Model) *server.Model {
	return testserve.LocalModel(t, name, aliases, m)
}
