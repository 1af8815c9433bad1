"""A scan against the patient's prior: registration, nodule matching, growth and categories."""
