DROP TABLE tasks;
DROP TABLE projects;
