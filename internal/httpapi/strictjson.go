package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/switchback/switchback"
)

// encoding/json reads a request the way no strict validator in front of
// Switchback would: it matches member names case-insensitively and with
// Unicode folding ("ſip" is read as sip, "ID" as id), lets the last of two
// equal names win, replaces invalid UTF-8 and lone surrogates with U+FFFD
// and takes null for "left out". Two readers of one request must not
// disagree on what it says, so a body is first walked token by token
// against the Go type it is decoded into, and only a body that passes is
// handed to encoding/json, which then can no longer read it differently.
//
// The rules, at every level of the body:
//   - a member name must be exactly the json name of a field of the struct
//     at that level (field names are case-sensitive; the spec's alternative
//     spellings are fields of their own, so they stay accepted);
//   - a name may appear once per object, in structs and maps alike;
//   - every string, names included, must be valid UTF-8 with no lone
//     UTF-16 surrogate escape and no NUL (PostgreSQL's text cannot hold one);
//   - null is refused: a member that is not wanted is left out;
//   - objects and arrays nest at most maxJSONDepth deep.

// maxJSONDepth bounds nesting. A call transfer request is four levels deep;
// the bound keeps a hostile body from making the walk recurse per byte.
const maxJSONDepth = 32

// decodeStrict decodes data, which must hold exactly one JSON object, into
// v, a pointer to a struct, after checking it against the rules above. A
// refusal is a *malformedJSON when the body is not a JSON object at all, or
// a field error naming the member at fault.
func decodeStrict(data []byte, v any, what string) error {
	w := &jsonWalker{data: data, dec: json.NewDecoder(bytes.NewReader(data)), what: what}
	w.dec.UseNumber()
	t := reflect.TypeOf(v).Elem()
	tok, _, err := w.next()
	if err != nil {
		return w.syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &malformedJSON{"request body must be a JSON object"}
	}
	if err := w.object("", t, 1); err != nil {
		return err
	}
	if _, err := w.dec.Token(); err != io.EOF {
		return &malformedJSON{"request body has data after the JSON object"}
	}
	if err := json.Unmarshal(data, v); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) && typ.Field != "" {
			return switchback.FieldErrorf(typ.Field, "must be %s, not a JSON %s", jsonKind(typ.Type), typ.Value)
		}
		return &malformedJSON{"request body is not valid JSON: " + err.Error()}
	}
	return nil
}

type jsonWalker struct {
	data []byte
	dec  *json.Decoder
	what string // what the body is, for messages: "a call transfer request"
}

// next returns the next token and the bytes it was read from (with the
// white space and delimiter before it).
func (w *jsonWalker) next() (json.Token, []byte, error) {
	start := w.dec.InputOffset()
	tok, err := w.dec.Token()
	return tok, w.data[start:w.dec.InputOffset()], err
}

func (w *jsonWalker) syntax(err error) error {
	var s *json.SyntaxError
	switch {
	case errors.As(err, &s):
		return &malformedJSON{fmt.Sprintf("request body is not valid JSON: %v (at byte %d)", s, s.Offset)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &malformedJSON{"request body is truncated JSON"}
	}
	return &malformedJSON{"request body is not valid JSON: " + err.Error()}
}

// object walks the members of an object whose '{' has been read, checking
// them against t (a struct or a map; anything else takes any member).
func (w *jsonWalker) object(path string, t reflect.Type, depth int) error {
	if depth > maxJSONDepth {
		return &malformedJSON{fmt.Sprintf("request body nests deeper than %d levels", maxJSONDepth)}
	}
	var fields map[string]reflect.Type
	var elem reflect.Type // a map's values
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = jsonFields(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	seen := map[string]bool{}
	for {
		tok, raw, err := w.next()
		if err != nil {
			return w.syntax(err)
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return nil
		}
		name := tok.(string) // the decoder allows only a string here
		if problem := stringProblem(raw); problem != "" {
			return switchback.FieldErrorf(orBody(path), "has a member name that %s", problem)
		}
		member := join(path, name)
		if seen[name] {
			return switchback.FieldErrorf(member, "is given twice")
		}
		seen[name] = true
		var mt reflect.Type
		switch {
		case fields != nil:
			ft, ok := fields[name]
			if !ok {
				return w.unknown(path, member, name, fields)
			}
			mt = ft
		case elem != nil:
			mt = elem
		}
		if err := w.value(member, mt, depth); err != nil {
			return err
		}
	}
}

// value walks one value, expected to be of type t (nil: anything).
func (w *jsonWalker) value(path string, t reflect.Type, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, raw, err := w.next()
	if err != nil {
		return w.syntax(err)
	}
	switch tok := tok.(type) {
	case nil:
		if t != nil && t.Kind() != reflect.Interface {
			return switchback.FieldErrorf(path, "must be %s, not null; leave it out instead", jsonKind(t))
		}
	case string:
		if problem := stringProblem(raw); problem != "" {
			return switchback.FieldErrorf(path, "%s", problem)
		}
	case json.Delim:
		if depth+1 > maxJSONDepth {
			return &malformedJSON{fmt.Sprintf("request body nests deeper than %d levels", maxJSONDepth)}
		}
		if tok == '{' {
			if t != nil && t.Kind() != reflect.Struct && t.Kind() != reflect.Map {
				t = nil // the wrong type: encoding/json names it; still check the names
			}
			return w.object(path, t, depth+1)
		}
		// An array: none is expected in a request, so its elements are
		// only checked for what every string must be; encoding/json then
		// refuses the array as the wrong type.
		for i := 0; w.dec.More(); i++ {
			if err := w.value(fmt.Sprintf("%s[%d]", path, i), nil, depth+1); err != nil {
				return err
			}
		}
		if _, _, err := w.next(); err != nil { // the ']'
			return w.syntax(err)
		}
	}
	return nil
}

func (w *jsonWalker) unknown(path, member, name string, fields map[string]reflect.Type) error {
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	slices.Sort(names)
	of := w.what
	if path != "" {
		of = path
	}
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return switchback.FieldErrorf(member, "is not a field of %s; field names are case-sensitive: did you mean %s?", of, n)
		}
	}
	return switchback.FieldErrorf(member, "is not a field of %s; its fields are %s", of, strings.Join(names, ", "))
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func orBody(path string) string {
	if path == "" {
		return "request body"
	}
	return path
}

// jsonFields are the json names of a struct's fields and their types. The
// request types embed no structs, so embedded fields are not flattened as
// encoding/json would flatten them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	fieldCache.Store(t, out)
	return out
}

var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// stringProblem says what is wrong with a JSON string as it was written
// (raw holds the literal, perhaps after white space and a delimiter), or
// "" if nothing is.
func stringProblem(raw []byte) string {
	i := bytes.IndexByte(raw, '"')
	if i < 0 {
		return ""
	}
	lit := raw[i:]
	if !utf8.Valid(lit) {
		return "is not valid UTF-8"
	}
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			continue
		}
		i++
		if i >= len(lit) || lit[i] != 'u' {
			continue
		}
		r := hex4(lit[i+1:])
		i += 4
		switch {
		case r == 0:
			return "contains a NUL character"
		case r >= 0xDC00 && r <= 0xDFFF:
			return "contains a lone UTF-16 surrogate escape"
		case r >= 0xD800 && r <= 0xDBFF:
			// A high surrogate must be followed at once by a low one.
			if i+6 >= len(lit) || lit[i+1] != '\\' || lit[i+2] != 'u' {
				return "contains a lone UTF-16 surrogate escape"
			}
			if lo := hex4(lit[i+3:]); lo < 0xDC00 || lo > 0xDFFF {
				return "contains a lone UTF-16 surrogate escape"
			}
			i += 6
		}
	}
	return ""
}

// hex4 reads the four hex digits of a \u escape; the decoder has checked
// they are there.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case '0' <= c && c <= '9':
			r |= rune(c - '0')
		case 'a' <= c && c <= 'f':
			r |= rune(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "a number"
	}
	return "a " + t.Kind().String()
}
