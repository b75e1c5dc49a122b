"""Dashboard pages for recognition, one module per job: `pictures` (photos, crops, thumbnails, evidence),
`recognitions` (Try it, past recognitions), `review` (the admins' review queue); `presentation` holds what the
templates and the page script draw. Rows come from `recognition.selectors`, pictures from `recognition.drawing`."""
