"""Experiments beside the library (as timm keeps its train/benchmark scripts beside its package):
scripts that run lcz_model to produce figures, never imported by lcz_model or the app.

    python -m experiments.al_sim     active learning on the synthetic city (test MAE vs labels)
    python -m experiments.bench      MSU-Net speed against its bare encoder
"""
