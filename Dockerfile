FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
# pg_dump and pg_restore for `manage.py backup` and `restore` (bookworm's 15, as the compose
# file's server).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
RUN TSUBAME_DATA_DIR=/tmp/build SECRET_KEY=build ENCRYPTION_KEYS=$(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())") \
    python manage.py collectstatic --noinput --verbosity 0 && rm -rf /tmp/build
EXPOSE 8000
CMD ["python", "-m", "tsubame.webserver", "-b", "0.0.0.0", "-p", "8000"]
