# Approval requests and decisions arrive with the approvals issue; roles live in the policy file.
