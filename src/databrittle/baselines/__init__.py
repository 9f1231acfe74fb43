"""Attribution baselines (paper section 2.1, Table 1, Fig. 3; appendix A.5): each gives float32 (T, n_train) scores."""
