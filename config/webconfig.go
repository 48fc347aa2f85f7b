package config

import (
	"fmt"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// checkWebConfig checks the --web.config.file at path before
// exporter-toolkit reads it, with the limits of the exporter's own file:
// a regular file of at most MaxConfigFileSize bytes that stands for at
// most MaxConfigNodes nodes once its aliases are expanded. The certificate,
// key and client CA files it names must be regular files of at most
// MaxConfigFileSize bytes too. A file the YAML library cannot read, or of
// another shape, is left to exporter-toolkit to word the error.
func checkWebConfig(path string) error {
	data, err := readFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil
	}
	if _, err := sizeExpanded(&doc, MaxConfigNodes); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var c struct {
		TLS struct {
			CertFile     string `yaml:"cert_file"`
			KeyFile      string `yaml:"key_file"`
			ClientCAFile string `yaml:"client_ca_file"`
		} `yaml:"tls_server_config"`
	}
	if err := doc.Decode(&c); err != nil {
		return nil
	}
	for _, f := range []struct{ field, path string }{
		{"cert_file", c.TLS.CertFile},
		{"key_file", c.TLS.KeyFile},
		{"client_ca_file", c.TLS.ClientCAFile},
	} {
		if f.path == "" {
			continue
		}
		// exporter-toolkit reads a relative path from the file's directory.
		p := f.path
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(path), p)
		}
		if _, err := readFile(p); err != nil {
			return fmt.Errorf("%s: tls_server_config.%s: %w", path, f.field, err)
		}
	}
	return nil
}
