-- A registry.db written before model_versions.git_dirty became nullable (sqlite3 .dump of a real one):
-- one version, in production, with its gate verdict and audit log.
BEGIN TRANSACTION;
CREATE TABLE audit_log (
	id INTEGER NOT NULL, 
	environment VARCHAR(100) NOT NULL, 
	version_id INTEGER NOT NULL, 
	action VARCHAR(50) NOT NULL, 
	from_status VARCHAR(20), 
	to_status VARCHAR(20) NOT NULL, 
	actor VARCHAR(200) NOT NULL, 
	reason TEXT NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(version_id) REFERENCES model_versions (id)
);
INSERT INTO "audit_log" VALUES(1,'local',1,'register',NULL,'candidate','test','built by Dagster run run-1','2026-11-30 12:08:37.245464');
INSERT INTO "audit_log" VALUES(2,'local',1,'promote','candidate','production','test','','2026-11-30 12:08:37.287319');
CREATE TABLE gate_decisions (
	id INTEGER NOT NULL, 
	environment VARCHAR(100) NOT NULL, 
	version_id INTEGER NOT NULL, 
	passed BOOLEAN NOT NULL, 
	reason TEXT NOT NULL, 
	details JSON NOT NULL, 
	dagster_run_id VARCHAR(64) NOT NULL, 
	decided_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(version_id) REFERENCES model_versions (id)
);
INSERT INTO "gate_decisions" VALUES(1,'local',1,1,'test verdict','{}','run-1','2026-11-30 12:08:37.261200');
CREATE TABLE model_versions (
	id INTEGER NOT NULL, 
	model_name VARCHAR(200) NOT NULL, 
	number INTEGER NOT NULL, 
	model_tag VARCHAR(300) NOT NULL, 
	bento_tag VARCHAR(300) NOT NULL, 
	package_path TEXT NOT NULL, 
	weights_sha256 VARCHAR(64) NOT NULL, 
	plugin VARCHAR(200) NOT NULL, 
	labels JSON NOT NULL, 
	data_version VARCHAR(64) NOT NULL, 
	dataset_size INTEGER NOT NULL, 
	code_versions JSON NOT NULL, 
	git_commit VARCHAR(64) NOT NULL, 
	git_dirty BOOLEAN NOT NULL, 
	hyperparameters JSON NOT NULL, 
	metrics JSON NOT NULL, 
	training_seconds FLOAT NOT NULL, 
	training_device VARCHAR(50) NOT NULL, 
	parent_version INTEGER, 
	dagster_run_id VARCHAR(64) NOT NULL, 
	registered_by VARCHAR(200) NOT NULL, 
	registered_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_model_versions_number UNIQUE (model_name, number), 
	UNIQUE (model_tag)
);
INSERT INTO "model_versions" VALUES(1,'image-classifier',1,'image-classifier:v1','image-classifier-service:b1','/artifacts/trained_model/1','0000000000000000000000000000000000000000000000000000000000000001','cnn','["cat", "dog"]','dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd',101,'{"trained_model": "1"}','cccccccccccccccccccccccccccccccccccccccc',0,'{"epochs": 1}','{"accuracy": 0.9, "macro_f1": 0.9, "num_examples": 20, "per_class": []}',1.5,'cpu',NULL,'run-1','test','2026-11-30 12:08:37.236758');
CREATE TABLE registry_environments (
	name VARCHAR(100) NOT NULL, 
	revision INTEGER NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);
INSERT INTO "registry_environments" VALUES('local',3,'2026-11-30 12:08:37.266267');
CREATE TABLE version_states (
	environment VARCHAR(100) NOT NULL, 
	version_id INTEGER NOT NULL, 
	status VARCHAR(20) NOT NULL, 
	disabled_from VARCHAR(20), 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (environment, version_id), 
	CONSTRAINT ck_version_states_status CHECK (status IN ('candidate', 'staging', 'production', 'archived', 'disabled')), 
	FOREIGN KEY(version_id) REFERENCES model_versions (id)
);
INSERT INTO "version_states" VALUES('local',1,'production',NULL,'2026-11-30 12:08:37.286533');
CREATE TRIGGER refuse_delete_model_versions BEFORE DELETE ON model_versions BEGIN SELECT RAISE(ABORT, 'the model registry never deletes or rewrites history (DELETE on model_versions)'); END;
CREATE TRIGGER refuse_update_model_versions BEFORE UPDATE ON model_versions BEGIN SELECT RAISE(ABORT, 'the model registry never deletes or rewrites history (UPDATE on model_versions)'); END;
CREATE UNIQUE INDEX uq_one_production_per_environment ON version_states (environment) WHERE status = 'production';
CREATE UNIQUE INDEX uq_one_staging_per_environment ON version_states (environment) WHERE status = 'staging';
CREATE TRIGGER refuse_delete_version_states BEFORE DELETE ON version_states BEGIN SELECT RAISE(ABORT, 'the model registry never deletes or rewrites history (DELETE on version_states)'); END;
CREATE TRIGGER refuse_delete_gate_decisions BEFORE DELETE ON gate_decisions BEGIN SELECT RAISE(ABORT, 'the model registry never deletes or rewrites history (DELETE on gate_decisions)'); END;
CREATE TRIGGER refuse_update_gate_decisions BEFORE UPDATE ON gate_decisions BEGIN SELECT RAISE(ABORT, 'the model registry never deletes or rewrites history (UPDATE on gate_decisions)'); END;
CREATE TRIGGER refuse_delete_audit_log BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the model registry never deletes or rewrites history (DELETE on audit_log)'); END;
CREATE TRIGGER refuse_update_audit_log BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the model registry never deletes or rewrites history (UPDATE on audit_log)'); END;
COMMIT;
