package doctor

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/stepflash/stepflash/auth"
)

// StepFun's two platforms (../shared/DESIGN.md section 7b, upstream.Known):
// they share no accounts, and a key of one gets a 401 with an empty body
// from the other.
var stepfunHosts = map[string]string{
	"api.stepfun.ai":  "global",
	"api.stepfun.com": "cn",
}

// regionBaseURL is the base URL of each StepFun region.
var regionBaseURL = map[string]string{
	"global": "https://api.stepfun.ai/v1",
	"cn":     "https://api.stepfun.com/v1",
}

// keyInfo is what a key's text says about its region.
type keyInfo struct {
	// Region is the key's region tag; "" when it has none that can be read.
	Region string
	// Checked: the key is a whole stepflash key whose checksum matches
	// (docs/keys.md); a region read from a key that is not (Checked false,
	// Region set) comes from its tag alone.
	Checked bool
	// Mistyped: shaped like a stepflash key, but its checksum does not match.
	Mistyped bool
}

// looseTag reads the tag of a key shaped sk-<tag>-... that is not a whole
// stepflash key (a vendor's key in the same format, or a truncated one).
var looseTag = regexp.MustCompile(`^sk-([a-z0-9]{1,16})-`)

// parseKey reads a key's region: DESIGN.md section 5's format
// sk-<region>-<32 base62>-<6 base62 checksum>, checked with auth.Parse;
// failing that, an sk-<tag>- prefix whose tag is a known region name (only
// those: "sk-proj-" is an OpenAI project key, not a region).
func parseKey(key string) keyInfo {
	if key == "" {
		return keyInfo{}
	}
	pk, err := auth.Parse(key)
	if err == nil {
		return keyInfo{Region: pk.Region, Checked: true}
	}
	m := looseTag.FindStringSubmatch(key)
	if m == nil {
		return keyInfo{}
	}
	ki := keyInfo{Mistyped: errors.Is(err, auth.ErrChecksum)}
	if ki.Mistyped || regionBaseURL[m[1]] != "" {
		ki.Region = m[1]
	}
	return ki
}

// hostRegion is the StepFun region of a base URL's host, "" for any other host.
func hostRegion(base string) (region, host string) {
	u, err := url.Parse(base)
	if err != nil {
		return "", ""
	}
	host = strings.ToLower(u.Hostname())
	return stepfunHosts[host], host
}

// other is the other StepFun region.
func other(region string) string {
	if region == "cn" {
		return "global"
	}
	return "cn"
}

// regionName names a StepFun region for people.
func regionName(region string) string {
	switch region {
	case "cn":
		return "China (cn)"
	case "global":
		return "global"
	}
	return region
}

// staticRegionMismatch compares a key's region tag with the StepFun host of
// the base URL, before any request: "" when they agree or one is unknown.
func staticRegionMismatch(ki keyInfo, base string) (msg, fix string) {
	hr, host := hostRegion(base)
	if hr == "" || ki.Region == "" || regionBaseURL[ki.Region] == "" || ki.Region == hr {
		return "", ""
	}
	return fmt.Sprintf("the key's region %s does not match this endpoint: %s is StepFun's %s platform, and StepFun's regions share no accounts (a key of the other gets a 401 with an empty body)",
			ki.Region, host, regionName(hr)),
		fmt.Sprintf("use --base-url %s with this key, or a key from StepFun's %s platform", regionBaseURL[ki.Region], regionName(hr))
}

// unauthorized explains a 401 or 403 answer. A body-less 401 is the region
// trap: StepFun's answer to a key of the other region (DESIGN.md section
// 7b); a JSON error object (stepflash's missing_api_key, invalid_api_key,
// region_mismatch of docs/keys.md) is reported with its message.
func (p *probe) unauthorized(ex *exchange) Result {
	ki := parseKey(p.cfg.APIKey)
	src := p.cfg.KeySource
	if src == "" {
		src = "the key"
	}
	if e := errorObject(ex.Body); e != nil {
		code := e.CodeString()
		r := fail("", "%s %s refused the key (%s): %s", ex.Method, ex.Path, describeCode(ex.Status, code), e.Message).with("code", code)
		switch {
		case code == "region_mismatch":
			r.Fix = "use the key at the base URL the message names, or a key issued for this endpoint's region"
		case p.cfg.APIKey == "" || code == "missing_api_key":
			r.Fix = "pass --api-key KEY or set $STEP_API_KEY"
		case ki.Mistyped:
			r.Fix = fmt.Sprintf("the key in %s is mistyped or truncated (its checksum does not match): copy it again", src)
		default:
			r.Fix = fmt.Sprintf("check the key in %s: it is not one this endpoint issued", src)
		}
		return r
	}
	if len(strings.TrimSpace(string(ex.Body))) > 0 {
		return fail(fmt.Sprintf("check the key in %s", src), "%s %s answered %d: %s", ex.Method, ex.Path, ex.Status, clip(string(ex.Body), 200))
	}
	if p.cfg.APIKey == "" {
		return fail("pass --api-key KEY or set $STEP_API_KEY",
			"%s %s answered %d with an empty body and no key was sent", ex.Method, ex.Path, ex.Status)
	}
	hr, host := hostRegion(p.base)
	r := Result{Status: Fail}.with("trap", "region").with("key_region", ki.Region).with("endpoint_region", hr)
	switch {
	case ki.Region != "" && regionBaseURL[ki.Region] != "" && ki.Region != hr:
		here := "this endpoint (" + host + ")"
		if hr != "" {
			here = fmt.Sprintf("this endpoint (%s, StepFun's %s platform)", host, regionName(hr))
		}
		r.Message = fmt.Sprintf("%d with an empty body: the region trap. The key's region %s does not match %s; StepFun answers a key of the other region this way",
			ex.Status, ki.Region, here)
		r.Fix = fmt.Sprintf("use --base-url %s with this key (StepFun %s), or a key of this endpoint's region", regionBaseURL[ki.Region], regionName(ki.Region))
	case hr != "":
		r.Message = fmt.Sprintf("%d with an empty body: the region trap. %s is StepFun's %s platform, which answers a key of the other region (or an unknown key) this way",
			ex.Status, host, regionName(hr))
		r.Fix = fmt.Sprintf("if the key in %s is from StepFun's %s platform use --base-url %s; else use a key from the %s platform",
			src, regionName(other(hr)), regionBaseURL[other(hr)], regionName(hr))
	default:
		r.Message = fmt.Sprintf("%d with an empty body: the region trap. StepFun answers a key of the other region this way (its regions share no accounts)", ex.Status)
		r.Fix = fmt.Sprintf("use the key at its own region's base URL (StepFun global %s, China %s), or check the key in %s",
			regionBaseURL["global"], regionBaseURL["cn"], src)
	}
	return r
}

func describeCode(status int, code string) string {
	if code == "" {
		return fmt.Sprint(status)
	}
	return fmt.Sprintf("%d %s", status, code)
}
