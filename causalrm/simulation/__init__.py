"""The paper's semi-synthetic protocol: rated data -> simulated impression logs with known selection and noise."""
