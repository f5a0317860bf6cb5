"""Second factors as a service: enrolment, the challenge, remembered devices, a user's enrolment."""
