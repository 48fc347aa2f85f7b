package config

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The errors of the package, wrapped with %w and checked with errors.Is.
// Those about a value are phrased to follow it.
var (
	// errYAML is a syntax error, worded by the YAML library.
	errYAML = errors.New("invalid YAML")
	// errStructure is a map, list or key where the file's shape has none.
	errStructure = errors.New("unexpected structure")
	// errShape is a value of the wrong shape, such as a scalar for a list.
	errShape = errors.New("has the wrong shape")
	// errEmpty is a list or rule that holds nothing.
	errEmpty = errors.New("is empty")
	// errCIDR is a value that is not a CIDR nor an address.
	errCIDR = errors.New("is not a CIDR")
	// errHostBits is a CIDR whose address has bits set past its length.
	errHostBits = errors.New("has host bits set")
	// errNetwork is a network name that is empty or reserved.
	errNetwork = errors.New("is not a valid network")
	// errDuplicate is a value given twice where it must be unique.
	errDuplicate = errors.New("is given twice")
	// errPort is a value that is not a port nor a port range.
	errPort = errors.New("is not a port or port range")
	// errPortRange is a port range whose start is above its end.
	errPortRange = errors.New("starts above its end")
	// errOverlap is a port range that overlaps another of the same list.
	errOverlap = errors.New("overlaps")
	// errProto is a value that is not a protocol.
	errProto = errors.New("is not a protocol")
	// errZone is a value that is not a conntrack zone.
	errZone = errors.New("is not a zone")
	// errMark is a value that is not a mark with an optional mask.
	errMark = errors.New("is not a mark")
	// errGroupBy is a value that is not a group-by key.
	errGroupBy = errors.New("is not a group-by key")
	// errMaxSeries is a max_series that is not a positive integer.
	errMaxSeries = errors.New("is not a positive integer")
	// errDocuments is a file that holds more than one YAML document.
	errDocuments = errors.New("more than one YAML document")
	// errTooLarge is a file larger than MaxConfigFileSize.
	errTooLarge = errors.New("configuration file too large")
	// errNotRegular is a path that names something else than a regular
	// file: a directory, a named pipe, a device or a socket.
	errNotRegular = errors.New("not a regular file")
	// errExpansion is an alias that takes the file, once every alias is
	// replaced by a copy of its anchor, past MaxConfigNodes nodes.
	errExpansion = errors.New("expands the file past the limit")
	// errAliasCycle is an alias inside the node it names, which would
	// expand forever.
	errAliasCycle = errors.New("is inside its own anchor")
	// errRestart is a setting of the file that a reload cannot change.
	errRestart = errors.New("cannot change on a reload: restart the exporter to apply it")
	// errFlag is a flag given a value it does not take.
	errFlag = errors.New("invalid flag value")
)

// maxQuoted is the most bytes of a value that an error quotes.
const maxQuoted = 40

// maxLibraryMessage is the most bytes of the YAML library's message that a
// syntax error repeats: it may quote the file, as in unknown anchor 'x'.
const maxLibraryMessage = 200

// quote returns s quoted, as %q does, for an error message: whole when it
// is at most maxQuoted bytes long, else its first maxQuoted bytes (cut at
// a character boundary) followed by … and its length, like
// "1111111111…" (1040000 bytes), so that an error stays short whatever the
// value.
func quote(s string) string {
	prefix, cut := truncate(s, maxQuoted)
	q := strconv.Quote(prefix)
	if !cut {
		return q
	}
	return fmt.Sprintf("%s…\" (%d bytes)", q[:len(q)-1], len(s))
}

// libraryMessage returns msg, a message of the YAML library, cut as quote
// cuts a value when it is longer than maxLibraryMessage bytes.
func libraryMessage(msg string) string {
	prefix, cut := truncate(msg, maxLibraryMessage)
	if !cut {
		return msg
	}
	return fmt.Sprintf("%s… (%d bytes)", prefix, len(msg))
}

// truncate returns s, or its first max bytes at most, cut at a character
// boundary, and whether it was cut.
func truncate(s string, max int) (string, bool) {
	if len(s) <= max {
		return s, false
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max], true
}

// pathName returns a name for a field path, like lan in networks.lan: the
// name as it is when short, else quoted and cut by quote.
func pathName(name string) string {
	if len(name) <= maxQuoted {
		return name
	}
	return quote(name)
}
