package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// envPrefix begins the name of every environment variable Load reads.
const envPrefix = "SWITCHBACK"

// Load returns the configuration to run with: Default, overridden by the YAML
// file at path when path is not empty, overridden by the environment, then
// checked with Validate.
//
// In the file, a field left out keeps its default, a list replaces the
// default list entirely (listing tenants drops the demo tenant, listing
// sip.trunks the local trunk), and a tenant's fields left out or zero take
// the tenant defaults, as do sip's scalars set to zero. A menu's digitTimeout
// and a collect's terminator are the exceptions: left out they take their
// defaults, but 0 and "" are kept (see Menu). An unknown key is an error
// naming it and its line. store.dsn defaults to DefaultSQLiteDSN
// only when the driver is sqlite: postgres needs one given.
//
// getenv (os.Getenv, or a map in tests; nil reads nothing) is asked for
// SWITCHBACK_ followed by the YAML path of every scalar field outside a list,
// upper-cased and joined with _, as in SWITCHBACK_API_LISTEN; EnvVars lists
// them. An empty value counts as unset.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := Default()
	// switchback.db is only the default for sqlite: a config that picks
	// postgres and gives no DSN must fail, not try to open a file name.
	cfg.Store.DSN = ""
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("read config: %w", err)
		}
		if err := decodeYAML(path, data, &cfg); err != nil {
			return Config{}, err
		}
	}
	if getenv != nil {
		if err := applyEnv(&cfg, getenv); err != nil {
			return Config{}, err
		}
	}
	if cfg.Store.Driver == DriverSQLite && cfg.Store.DSN == "" {
		cfg.Store.DSN = DefaultSQLiteDSN
	}
	cfg.SIP = cfg.SIP.withDefaults()
	for i := range cfg.Tenants {
		cfg.Tenants[i] = cfg.Tenants[i].withDefaults()
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// decodeYAML decodes data, the contents of the file named name, over cfg. It
// reports every unknown key and every value of the wrong type at once, in
// the order of the file, each as "name:line: ...".
func decodeYAML(name string, data []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty, or only comments
	}
	// The decoder reports an unknown key by its Go type; unknownKeys names
	// its YAML path and the keys that would have been right.
	problems := unknownKeys(&doc, reflect.TypeOf(cfg).Elem(), "")
	reported := make(map[int]bool, len(problems))
	for _, p := range problems {
		reported[p.line] = true
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(cfg)
	var typeErr *yaml.TypeError
	if err != nil && !errors.As(err, &typeErr) {
		return fmt.Errorf("%s: %w", name, err)
	}
	if typeErr != nil {
		for _, msg := range typeErr.Errors {
			p := decoderProblem(msg)
			if reported[p.line] && decoderUnknownField.MatchString(p.msg) {
				continue
			}
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].line < problems[j].line })
		errs := make([]error, len(problems))
		for i, p := range problems {
			if p.line == 0 { // a decoder message without its line
				errs[i] = fmt.Errorf("%s: %s", name, p.msg)
				continue
			}
			errs[i] = fmt.Errorf("%s:%d: %s", name, p.line, p.msg)
		}
		return errors.Join(errs...)
	}

	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: holds more than one YAML document; a config is one", name)
	}
	return nil
}

// UnmarshalYAML decodes a menu whose digitTimeout defaults to
// DefaultDigitTimeout only when the key is left out: an explicit 0 means "do
// not wait".
func (m *Menu) UnmarshalYAML(n *yaml.Node) error {
	type fields Menu // without this method, so it decodes field by field
	v := fields{DigitTimeout: Duration(DefaultDigitTimeout)}
	err := decodeFields(n, &v, "a menu")
	*m = Menu(v)
	return err
}

// UnmarshalYAML decodes a collect whose terminator defaults to
// DefaultTerminator only when the key is left out: an explicit "" means no
// terminator.
func (c *Collect) UnmarshalYAML(n *yaml.Node) error {
	type fields Collect // without this method, so it decodes field by field
	v := fields{Terminator: DefaultTerminator}
	err := decodeFields(n, &v, "a collect")
	*c = Collect(v)
	return err
}

func (*Menu) presetsDefaults()    {}
func (*Collect) presetsDefaults() {}

// presetter is a struct whose UnmarshalYAML only presets some fields before
// decoding the mapping field by field. That decoding does not refuse unknown
// keys, so unknownKeys checks them as it does any struct's.
type presetter interface{ presetsDefaults() }

var presetterType = reflect.TypeFor[presetter]()

// decodeFields decodes mapping n into v, which holds the presets. It returns
// a *yaml.TypeError, as yaml.v3 expects of an UnmarshalYAML that lets the
// decoder go on with the rest of the file.
func decodeFields(n *yaml.Node, v any, what string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s must be a mapping of its fields", n.Line, what)}}
	}
	return n.Decode(v)
}

// lineProblem is a mistake found on one line of the file.
type lineProblem struct {
	line int
	msg  string
}

// yaml.v3 words each entry of a TypeError as "line N: message".
var (
	decoderLine         = regexp.MustCompile(`^line (\d+): (.*)$`)
	decoderUnknownField = regexp.MustCompile(`^field \S+ not found in type `)
)

func decoderProblem(msg string) lineProblem {
	m := decoderLine.FindStringSubmatch(msg)
	if m == nil {
		return lineProblem{msg: msg}
	}
	line, _ := strconv.Atoi(m[1])
	return lineProblem{line: line, msg: m[2]}
}

// unknownKeys reports every mapping key of n that names no field of t, with
// its YAML path (under path). Values of the wrong shape are left for the
// decoder to report.
func unknownKeys(n *yaml.Node, t reflect.Type, path string) []lineProblem {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil
		}
		return unknownKeys(n.Content[0], t, path)
	case yaml.AliasNode:
		return unknownKeys(n.Alias, t, path)
	}
	var problems []lineProblem
	switch t.Kind() {
	case reflect.Pointer:
		return unknownKeys(n, t.Elem(), path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range n.Content {
			problems = append(problems, unknownKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			if key.ShortTag() == "!!merge" {
				problems = append(problems, mergedKeys(value, t, path)...)
				continue
			}
			problems = append(problems, unknownKeys(value, t.Elem(), fmt.Sprintf("%s[%q]", path, key.Value))...)
		}
	case reflect.Struct:
		pt := reflect.PointerTo(t)
		if n.Kind != yaml.MappingNode || (pt.Implements(yamlUnmarshaler) && !pt.Implements(presetterType)) {
			return nil
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, value := n.Content[i], n.Content[i+1]
			if key.ShortTag() == "!!merge" {
				problems = append(problems, mergedKeys(value, t, path)...)
				continue
			}
			f, ok := fields[key.Value]
			if !ok {
				problems = append(problems, unknownKey(key, fields, joinPath(path, key.Value)))
				continue
			}
			problems = append(problems, unknownKeys(value, f.Type, joinPath(path, key.Value))...)
		}
	}
	return problems
}

// mergedKeys checks the mapping, or list of mappings, that "<<: *anchor"
// merges into a mapping of type t.
func mergedKeys(value *yaml.Node, t reflect.Type, path string) []lineProblem {
	merged := []*yaml.Node{value}
	if value.Kind == yaml.SequenceNode {
		merged = value.Content
	}
	var problems []lineProblem
	for _, m := range merged {
		problems = append(problems, unknownKeys(m, t, path)...)
	}
	return problems
}

var yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()

func unknownKey(key *yaml.Node, fields map[string]reflect.StructField, path string) lineProblem {
	known := make([]string, 0, len(fields))
	for name := range fields {
		if strings.EqualFold(name, key.Value) {
			return lineProblem{key.Line, fmt.Sprintf("%s: unknown field; did you mean %s?", path, name)}
		}
		known = append(known, name)
	}
	sort.Strings(known)
	return lineProblem{key.Line, fmt.Sprintf("%s: unknown field; known fields here are %s", path, strings.Join(known, ", "))}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML keys of struct t to its fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		if key := yamlKey(t.Field(i)); key != "" {
			fields[key] = t.Field(i)
		}
	}
	return fields
}

// yamlKey is the key yaml.v3 decodes f from, or "" if it decodes none.
// Inline structs are not supported: no field of Config is one.
func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch key {
	case "-":
		return ""
	case "":
		return strings.ToLower(f.Name)
	}
	return key
}

// EnvVars lists the environment variables Load reads, in the order of the
// fields they set: one for every scalar field reachable from Config without
// crossing a list, a map or a pointer.
func EnvVars() []string {
	var names []string
	var c Config
	eachScalar(reflect.ValueOf(&c).Elem(), envPrefix, func(name string, _ reflect.Value) {
		names = append(names, name)
	})
	return names
}

func applyEnv(c *Config, getenv func(string) string) error {
	var errs []error
	eachScalar(reflect.ValueOf(c).Elem(), envPrefix, func(name string, v reflect.Value) {
		s := getenv(name)
		if s == "" {
			return
		}
		if err := setScalar(v, s); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	})
	return errors.Join(errs...)
}

// eachScalar calls fn with the variable name of every scalar field of struct
// v, descending into structs but not into slices, maps or pointers: a list
// item has no stable name, a map's keys are the file's, and a pointer may be
// nil.
func eachScalar(v reflect.Value, name string, fn func(name string, v reflect.Value)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		key := yamlKey(t.Field(i))
		if key == "" {
			continue
		}
		fv, fname := v.Field(i), name+"_"+strings.ToUpper(key)
		switch {
		case isScalar(fv):
			fn(fname, fv)
		case fv.Kind() == reflect.Struct:
			eachScalar(fv, fname, fn)
		}
	}
}

func isScalar(v reflect.Value) bool {
	if _, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return true
	}
	switch v.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// setScalar parses s into v, a field for which isScalar holds.
func setScalar(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(encoding.TextUnmarshaler); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return numberError(s, "an integer", err)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return numberError(s, "a non-negative integer", err)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			return numberError(s, "a number", err)
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("cannot set a %s from the environment", v.Type())
	}
	return nil
}

func numberError(s, what string, err error) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%q is out of range", s)
	}
	return fmt.Errorf("%q is not %s", s, what)
}
