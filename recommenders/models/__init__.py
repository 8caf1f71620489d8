"""Learned recommenders, trained on the event log and served from artifacts.

Submodules, one job each:

- `sessions`: the event log as listening sessions (numpy arrays), split by simulated day.
- `config`: validated training and serving configurations of every learned model.
- `ranking`: the scoring contract shared by learned models and offline evaluation.
- `artifacts`: the artifact directory format (JSON metadata plus `.npz` weights).
- `knn`: cosine nearest-neighbour pairing of users (scipy.sparse).
- `dssm`: the two-tower DSSM recommender (numpy at serve time).
- `bpr_knn`: the BPR ranker over KNN-paired candidates (numpy at serve time).
- `torch`: the torch networks and training loops; imported only to train.
"""
