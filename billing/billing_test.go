package billing

import (
	"testing"

	"github.com/stepflash/stepflash/api"
)

func TestPrice(t *testing.T) {
	u := api.NewUsage(1200, 1024, 300, 120)
	if u.TotalTokens != 1500 || u.CachedTokens != 1024 || u.PromptTokensDetails.CachedTokens != 1024 || u.CompletionTokensDetails.ReasoningTokens != 120 {
		t.Errorf("usage %+v", u)
	}
	u.CostDetails.Advisor = 0.5
	Default.Price(u)
	want := (176*0.20+1024*0.04+300*1.15)/1e6 + 0.5
	if d := u.Cost - want; d > 1e-15 || d < -1e-15 {
		t.Errorf("cost %v, want %v", u.Cost, want)
	}
	if u.CostDetails.InputMiss != 176*0.20/1e6 || u.CostDetails.InputHit != 1024*0.04/1e6 || u.CostDetails.Output != 300*1.15/1e6 {
		t.Errorf("cost details %+v", u.CostDetails)
	}
}
