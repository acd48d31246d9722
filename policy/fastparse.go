package policy

import "strings"

// fastParse normalizes the references a host sees nearly always (lower-case
// host names, a port, repository paths, a tag, a sha256 digest) without the
// reference grammar's regular expressions, which cost several times the
// decision itself. It follows distribution/reference's grammar and Docker's
// normalization exactly for what it accepts, and declines (ok false) every
// other input, which then goes to the library: errors always come from
// there. FuzzFastParse holds the two to the same answers.
func fastParse(s string) (r Ref, ok bool) {
	domain, library, path, tag, digest, ok := splitParts(s)
	if !ok {
		return Ref{}, false
	}
	if tag == "" && digest == "" {
		tag = "latest"
	}
	// One string holds the normalized reference, and every field is a
	// part of it: name[:tag][@digest], the name being domain/path.
	nameLen := len(domain) + 1 + len(path)
	if library {
		nameLen += len("library/")
	}
	n := nameLen
	if tag != "" {
		n += 1 + len(tag)
	}
	if digest != "" {
		n += 1 + len(digest)
	}
	if n == len(s) && !library && s[len(domain)] == '/' && s[:len(domain)] == domain {
		// The input named its host, tag or digest: it is normalized as
		// written (the host is canonical, or the slow path had it), and
		// most references in a list are. Nothing to build.
		r.String = s
	} else {
		b := make([]byte, 0, n)
		b = append(b, domain...)
		b = append(b, '/')
		if library {
			b = append(b, "library/"...)
		}
		b = append(b, path...)
		if tag != "" {
			b = append(b, ':')
			b = append(b, tag...)
		}
		if digest != "" {
			b = append(b, '@')
			b = append(b, digest...)
		}
		r.String = string(b)
	}
	r.Domain = r.String[:len(domain)]
	r.Name = r.String[:nameLen]
	r.Path = r.Name[len(domain)+1:]
	if tag != "" {
		r.Tag = r.String[nameLen+1 : nameLen+1+len(tag)]
	}
	if digest != "" {
		r.Digest = r.String[n-len(digest):]
	}
	return r, true
}

// splitFast splits a reference in its common shapes into its normalized
// host and path and its tag and digest as written, or declines.
func splitFast(s string) (domain, path, tag, digest string, ok bool) {
	domain, library, path, tag, digest, ok := splitParts(s)
	if library {
		path = "library/" + path
	}
	return domain, path, tag, digest, ok
}

// splitParts is splitFast with Docker Hub's library/ prefix left to the
// caller: library is set when the path needs it.
func splitParts(s string) (domain string, library bool, path, tag, digest string, ok bool) {
	if isImageID(s) {
		return "", false, "", "", "", false // the library refuses 64 hex digits as a name
	}
	rest := s
	if i := indexByte(s, '@'); i >= 0 {
		rest, digest = s[:i], s[i+1:]
		if !isSHA256Digest(digest) {
			return "", false, "", "", "", false
		}
	}
	name := rest
	if i := lastIndexByte(rest, ':'); i >= 0 && indexByte(rest[i:], '/') < 0 {
		name, tag = rest[:i], rest[i+1:]
		if !isTag(tag) {
			return "", false, "", "", "", false
		}
	}
	domain, path = "docker.io", name
	if i := indexByte(name, '/'); i >= 0 {
		first := name[:i]
		if first == "localhost" || looksLikeHost(first) {
			if !isPlainHost(first) {
				return "", false, "", "", "", false // upper case, :443, IPv6, Hub's aliases: the slow path
			}
			domain, path = first, name[i+1:]
		}
	}
	if !isPath(path) {
		return "", false, "", "", "", false
	}
	library = domain == "docker.io" && indexByte(path, '/') < 0
	n := len(domain) + 1 + len(path)
	if library {
		n += len("library/")
	}
	if n > 255 {
		return "", false, "", "", "", false
	}
	return domain, library, path, tag, digest, true
}

// isPlainHost: lower-case dotted labels (letters, digits, inner hyphens)
// and an optional port in its one spelling other than 443, so the host is
// already canonical.
func isPlainHost(h string) bool {
	host := h
	if i := indexByte(h, ':'); i >= 0 {
		host = h[:i]
		if port := h[i+1:]; port == "443" || !isCanonicalPort(port) {
			return false
		}
	}
	if host == "" || host == "index.docker.io" || host == "registry-1.docker.io" {
		return false
	}
	for {
		label := host
		i := indexByte(host, '.')
		if i >= 0 {
			label = host[:i]
		}
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for j := 0; j < len(label); j++ {
			if c := label[j]; !isLowerAlnum(c) && c != '-' {
				return false
			}
		}
		if i < 0 {
			return true
		}
		host = host[i+1:]
	}
}

// isPath: components of [a-z0-9]+ joined by one separator (., _, __ or a
// run of -), split by single slashes.
func isPath(p string) bool {
	if p == "" {
		return false
	}
	for {
		comp := p
		i := indexByte(p, '/')
		if i >= 0 {
			comp = p[:i]
		}
		if !isPathComponent(comp) {
			return false
		}
		if i < 0 {
			return true
		}
		p = p[i+1:]
	}
}

func isPathComponent(c string) bool {
	if c == "" || !isLowerAlnum(c[0]) || !isLowerAlnum(c[len(c)-1]) {
		return false
	}
	for i := 1; i < len(c)-1; i++ {
		switch c[i] {
		case '.':
			if !isLowerAlnum(c[i+1]) {
				return false
			}
		case '_':
			if c[i+1] == '_' {
				i++
				if !isLowerAlnum(c[i+1]) {
					return false
				}
			} else if !isLowerAlnum(c[i+1]) {
				return false
			}
		case '-':
			j := i
			for c[j] == '-' {
				j++ // the last character is no hyphen: this stops
			}
			if !isLowerAlnum(c[j]) {
				return false
			}
			i = j
		default:
			if !isLowerAlnum(c[i]) {
				return false
			}
		}
	}
	return true
}

// isTag: [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func isTag(t string) bool {
	if t == "" || len(t) > 128 || !isWord(t[0]) {
		return false
	}
	for i := 1; i < len(t); i++ {
		if c := t[i]; !isWord(c) && c != '.' && c != '-' {
			return false
		}
	}
	return true
}

func isSHA256Digest(d string) bool {
	if len(d) != 7+64 || d[:7] != "sha256:" {
		return false
	}
	for i := 7; i < len(d); i++ {
		if c := d[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isWord(c byte) bool { return isLowerAlnum(c) || c >= 'A' && c <= 'Z' || c == '_' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func indexByte(s string, c byte) int { return strings.IndexByte(s, c) }

func lastIndexByte(s string, c byte) int { return strings.LastIndexByte(s, c) }

// looksLikeHost: as Docker decides, the first component of a name (other
// than localhost) is a host if it has a dot, a colon or an upper-case
// letter.
func looksLikeHost(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '.' || c == ':' || c >= 'A' && c <= 'Z' {
			return true
		}
	}
	return false
}
