package config

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/exporter-toolkit/web"
)

// defaultFlags returns the exporter's flags with their defaults.
func defaultFlags(t *testing.T) *Flags {
	t.Helper()
	app := kingpin.New("test", "")
	f := AddFlags(app)
	if _, err := app.Parse(nil); err != nil {
		t.Fatal(err)
	}
	return f
}

// specialFiles makes, in dir, one of each kind of file that is not a
// regular file, and returns each path with what an error must call it.
func specialFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	fifo := filepath.Join(dir, "fifo.yml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir.yml")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock.yml")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return map[string]string{
		fifo:        "it is a named pipe (FIFO)",
		sub:         "it is a directory",
		sock:        "it is a socket",
		"/dev/zero": "it is a character device",
	}
}

// within fails the test if fn takes more than a few seconds: a named pipe
// must not block the open.
func within(t *testing.T, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("still reading after 5s")
		return nil
	}
}

// TestLoadRefusesSpecialFiles: --config.file must be a regular file: a
// named pipe (which blocked the start forever), a directory, a socket or
// /dev/zero is refused at once, with its path and what it is.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	for path, what := range specialFiles(t, t.TempDir()) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			err := within(t, func() error { _, err := Load(path); return err })
			if !errors.Is(err, errNotRegular) {
				t.Fatalf("Load() error %v, want %v", err, errNotRegular)
			}
			if want := path + ": not a regular file: " + what; err.Error() != want {
				t.Errorf("Load() error %q, want %q", err, want)
			}
		})
	}
}

func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "huge.yml")
	if err := os.WriteFile(path, []byte("# "+strings.Repeat("x", MaxConfigFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, errTooLarge) || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("Load() error %v, want %v naming the file", err, errTooLarge)
	}
}

// TestSettingsWebConfigChecked: --web.config.file, and the certificate
// files it names, are checked with the limits of --config.file before
// exporter-toolkit reads them.
func TestSettingsWebConfigChecked(t *testing.T) {
	dir := t.TempDir()
	special := specialFiles(t, dir)
	fifo := filepath.Join(dir, "fifo.yml")
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	type test struct {
		name, path string
		want       error
		msg        string
	}
	var tests []test
	for path, what := range special {
		tests = append(tests, test{"the file " + filepath.Base(path), path, errNotRegular, path + ": not a regular file: " + what})
	}
	tests = append(tests,
		test{"too large", write("huge.yml", "# "+strings.Repeat("x", MaxConfigFileSize)), errTooLarge, "larger than 1048576 bytes"},
		test{"merge bomb", write("bomb.yml", strings.Replace(mergeBomb(9), "networks:", "basic_auth_users:", 1)), errExpansion, "bomb.yml: line 8: alias *l4 expands the file past the limit"},
		test{"cert_file a named pipe", write("cert.yml", "tls_server_config:\n  cert_file: fifo.yml\n  key_file: /dev/zero\n"), errNotRegular,
			"cert.yml: tls_server_config.cert_file: " + fifo + ": not a regular file: it is a named pipe (FIFO)"},
		test{"key_file a device", write("key.yml", "tls_server_config:\n  cert_file: cert.yml\n  key_file: /dev/zero\n"), errNotRegular,
			"key.yml: tls_server_config.key_file: /dev/zero: not a regular file: it is a character device"},
		test{"client_ca_file a directory", write("ca.yml", "tls_server_config:\n  client_ca_file: dir.yml\n"), errNotRegular,
			"ca.yml: tls_server_config.client_ca_file: " + filepath.Join(dir, "dir.yml") + ": not a regular file: it is a directory"},
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			listen := []string{":9862"}
			toolkit := &web.FlagConfig{WebListenAddresses: &listen, WebConfigFile: &tt.path}
			f := defaultFlags(t)
			err := within(t, func() error { _, err := f.Settings(toolkit); return err })
			if !errors.Is(err, tt.want) {
				t.Fatalf("Settings() error %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "--web.config.file: ") || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("Settings() error %q, want --web.config.file: ...%s", err, tt.msg)
			}
		})
	}
	// A good file is handed on.
	users := write("users.yml", "basic_auth_users:\n  alice: $2y$10$abcdefghijklmnopqrstuuJ0MT6mLmyEYZfFPZ1rVq0brxO5MsE6i\n")
	listen := []string{":9862"}
	f := defaultFlags(t)
	if _, err := f.Settings(&web.FlagConfig{WebListenAddresses: &listen, WebConfigFile: &users}); err != nil {
		t.Errorf("Settings() with %s: %v", users, err)
	}
}
