DROP TABLE commissions;
DROP TABLE layaways;
DROP TABLE work_orders;
