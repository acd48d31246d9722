package lint

import (
	"fmt"
	"strings"
	"unicode"
)

// composeImages lists services.*.image of a Compose file.
func composeImages(data []byte) ([]imageUse, error) {
	docs, err := yamlDocuments(data)
	if err != nil {
		return nil, err
	}
	var uses []imageUse
	for _, doc := range docs {
		_, services := lookup(doc, "services")
		for _, kv := range pairs(services) {
			k, v := lookup(kv[1], "image")
			if k == nil {
				continue // built, not pulled
			}
			u, err := imageAt(k, v, "compose service "+kv[0].Value)
			if err != nil {
				return nil, err
			}
			if vars := composeVariables(u.Input); len(vars) > 0 {
				u.Ref = ""
				u.Unresolved = fmt.Sprintf("unresolved: Compose interpolates %s from the environment when it runs, so the image is not known here", strings.Join(vars, ", "))
			} else {
				u.Ref = strings.ReplaceAll(u.Input, "$$", "$")
			}
			uses = append(uses, u)
		}
	}
	return uses, nil
}

// composeVariables lists the variables Compose would interpolate into s
// ($VAR, ${VAR}, ${VAR:-default}, ...); $$ is a literal dollar sign.
func composeVariables(s string) []string {
	var vars []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' {
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			i++
			continue
		}
		rest := strings.TrimPrefix(s[i+1:], "{")
		end := strings.IndexFunc(rest, func(r rune) bool { return !(r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) })
		if end < 0 {
			end = len(rest)
		}
		name := rest[:end]
		if name == "" {
			name = "$" + rest
		}
		vars = append(vars, "$"+strings.TrimPrefix(name, "$"))
	}
	return vars
}
