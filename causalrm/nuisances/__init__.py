"""The nuisance models fitted before training: propensity, flip rates, pseudo-labels, and the gates on them."""
