package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/stepflash/stepflash/gguf"
	"github.com/stepflash/stepflash/tokenizer"
)

func cmdTokenize(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tokenize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var path string
	fs.StringVar(&path, "m", "", "model: path to a GGUF file (a vocab-only file is enough)")
	fs.StringVar(&path, "model", "", "same as -m")
	bos := fs.Bool("bos", false, "add BOS/EOS as the vocabulary asks (llama.cpp add_special)")
	special := fs.Bool("special", false, "parse special-token text such as <|im_start|> (llama.cpp parse_special)")
	asJSON := fs.Bool("json", false, `print {"tokens":[ids]}`)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: stepflash tokenize -m MODEL [--bos] [--special] [--json] [--] TEXT\n\nBy default no BOS is added and special tokens are not parsed, as llama.cpp's tokenizer tests do.\nTEXT \"-\" reads standard input. Without --json each token is printed as: id -> 'piece'.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	text, err := textArg(pos, stdin)
	if err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("no model: pass -m FILE.gguf")
	}
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return err
	}
	ids := tok.Encode(text, *bos, *special)
	if *asJSON {
		if ids == nil {
			ids = []int32{}
		}
		return json.NewEncoder(stdout).Encode(struct {
			Tokens []int32 `json:"tokens"`
		}{ids})
	}
	for _, id := range ids {
		fmt.Fprintf(stdout, "%6d -> '%s'\n", id, tok.Piece(id))
	}
	return nil
}
