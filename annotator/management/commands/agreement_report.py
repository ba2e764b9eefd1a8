import json

from django.core.management.base import BaseCommand

from annotator import selectors

from ._common import campaign_or_error


class Command(BaseCommand):
    help = "Inter-annotator agreement of a campaign: the same figures the dashboard shows."

    def add_arguments(self, parser):
        parser.add_argument("--campaign", required=True)
        parser.add_argument("--round", type=int, default=1)
        parser.add_argument("--json", action="store_true", help="print the full figures as JSON")

    def handle(self, *args, **o):
        campaign = campaign_or_error(o["campaign"])
        figures = selectors.campaign_agreement(campaign, o["round"])
        if o["json"]:
            self.stdout.write(json.dumps(figures, indent=2, sort_keys=True))
            return
        self.stdout.write(format_report(campaign.name, figures))


def _f(v, fmt="{:.3f}"):
    return "n/a" if v is None else fmt.format(v)


def format_report(name: str, f: dict) -> str:
    lines = [f"Agreement for {name!r}"]
    lines.append(f"  blocks with all splits: {f.get('n_blocks', 0)}, interpreters: {f.get('n_raters', 0)}, "
                 f"splits: {f.get('n_ratings', 0)}")
    tv = f.get("tv", {})
    lines.append(f"  mean pairwise TV: {_f(tv.get('mean'))}  median {_f(tv.get('median'))}  p90 {_f(tv.get('p90'))}")
    lines.append(f"  dominant class agreement: {_f(f.get('dominant_agreement_rate'), '{:.1%}')}; "
                 f"WUDAPT-weighted: {_f(f.get('weighted_dominant_agreement'))}")
    fk = f.get("fleiss_kappa_dominant") or {}
    lines.append(f"  Fleiss' kappa (dominant): {_f(fk.get('kappa'))} over {fk.get('n_blocks', 0)} blocks; "
                 f"Krippendorff alpha nominal (dominant): {_f(f.get('alpha_nominal_dominant'))}")
    d = f.get("disputed") or {}
    lines.append(f"  disputed: {d.get('count', 0)} ({_f(d.get('share'), '{:.1%}')})")
    skips = f.get("skips") or {}
    if skips.get("count"):
        lines.append(f"  can't label (skips): {skips['count']} on {skips.get('blocks', 0)} blocks, by reason "
                     + ", ".join(f"{k} {v}" for k, v in sorted((skips.get("by_reason") or {}).items()))
                     + f"; {skips.get('disputed_by_skips', 0)} blocks disputed for want of a labelled majority")
    alpha = (f.get("alpha_interval") or {}).get("per_class") or {}
    if alpha:
        lines.append("  Krippendorff alpha (interval) per class:")
        lines.append("    " + "  ".join(f"{k}={_f(v, '{:.2f}')}" for k, v in alpha.items()))
    for who in f.get("interpreters", []):
        lines.append(f"  {who.get('name')}: {who.get('n_ratings', 0)} splits, "
                     + (f"{who['n_skips']} can't label, " if who.get("n_skips") else "")
                     + f"MAD vs others {_f(who.get('mad'), '{:.4f}')}, TV vs others {_f(who.get('tv_to_others'))}")
    return "\n".join(lines)
